"""The job ledger's state transitions, as plain SQL on a psycopg connection.

Every write names the state it expects (`WHERE state = 'running' AND worker_id = ... AND
attempts = ...`), so a late, duplicated or concurrent writer changes nothing.
A finished job releases its dedup key at once, or keeps it for `dedup_window` after finishing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.states import JobState

# The dedup key columns when a job reaches a final state: released now, or after its window.
_RELEASE_DEDUP_ON_FINISH = """
       dedup_lock  = CASE WHEN dedup_window IS NULL THEN NULL ELSE dedup_lock END,
       dedup_until = now() + dedup_window"""


@dataclass(frozen=True)
class StartedAttempt:
    job_id: int
    attempt: int
    max_attempts: int
    # Seconds between the job's claim (its started_at) and the moment a thread began running it:
    # a job claimed at fetch time waits for a thread (workers/consumer.py). Its outcome moves
    # started_at on by as much, so an attempt's duration is its run's.
    waited_s: float = 0.0


# HOT_PATH_PLANNING: the batched statements of the hot path are not prepared, so each is planned
# for the table as it is now. psycopg prepares a statement after 5 executions and PostgreSQL then
# keeps a generic plan, built once: prepared while `jobs` was small or just emptied (a new
# deployment, a prune; autovacuum off or not there yet), it stays a seq scan or a walk of a
# whole index once the table holds thousands of rows (bench/RESULTS.md, throughput, measured
# at 244 jobs/s). Planning once per batch costs far less than that.

# -- job_start_many -- messages arrived: queued -> running, for a batch of one worker's messages
# (group commit). Also accepts the same message again (a retried statement whose first try
# committed), without counting a second attempt. Two messages for one job in a batch: the row is
# updated once and only one of them comes back (the other is skipped).
JOB_START_MANY = """
UPDATE jobs j
   SET state = 'running',
       attempts = j.attempts + (j.state = 'queued')::int,
       worker_id = %(worker_id)s,
       message_id = m.message_id,
       started_at = CASE WHEN j.state = 'queued' THEN now() ELSE j.started_at END
  FROM unnest(%(job_ids)s::bigint[], %(message_ids)s::text[]) AS m(job_id, message_id)
 WHERE j.id = m.job_id
   -- A CASE, not an OR of states: the planner must find the rows by id (an OR of states lets
   -- it scan every queued row through the state indexes when statistics say there are few).
   AND CASE j.state WHEN 'queued' THEN true
                    WHEN 'running' THEN j.worker_id = %(worker_id)s AND j.message_id = m.message_id
                    ELSE false END
RETURNING m.message_id, j.attempts, j.max_attempts,
          set_config('synchronous_commit', 'off', true)
"""


def job_start_many(
    conn: psycopg.Connection, worker_id: str, messages: list[tuple[int, str]]
) -> dict[str, StartedAttempt]:
    """Start the jobs of (job_id, message_id) pairs; the started ones by message id."""
    by_message = {message_id: job_id for job_id, message_id in messages}
    rows = conn.execute(
        JOB_START_MANY,
        {
            "worker_id": worker_id,
            "job_ids": [job_id for job_id, _ in messages],
            "message_ids": [message_id for _, message_id in messages],
        },
        prepare=False,  # planned for each batch: see HOT_PATH_PLANNING
    ).fetchall()
    return {m: StartedAttempt(by_message[m], attempts, max_attempts) for m, attempts, max_attempts, _ in rows}


# -- job_succeed_many -- running -> succeeded, and the attempt's record, for a batch of one worker's
# attempts (group commit).
JOB_SUCCEED_MANY = f"""
WITH done AS (
    UPDATE jobs j
       SET state = 'succeeded', finished_at = now(), last_error = NULL,
           started_at = j.started_at + make_interval(secs => a.waited_s),{_RELEASE_DEDUP_ON_FINISH}
      FROM unnest(%(job_ids)s::bigint[], %(attempts)s::int[], %(waited_s)s::float8[])
           AS a(job_id, attempt, waited_s)
     WHERE j.id = a.job_id AND j.state = 'running'
       AND j.worker_id = %(worker_id)s AND j.attempts = a.attempt
 RETURNING j.id, j.attempts, j.worker_id, j.started_at, j.finished_at)
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
SELECT id, attempts, worker_id, started_at, finished_at, 'succeeded' FROM done
RETURNING job_id
"""


def job_succeed_many(conn: psycopg.Connection, worker_id: str, attempts: list[StartedAttempt]) -> set[int]:
    """Record successful attempts; returns the job ids whose outcome was recorded."""
    rows = conn.execute(
        JOB_SUCCEED_MANY,
        {
            "worker_id": worker_id,
            "job_ids": [a.job_id for a in attempts],
            "attempts": [a.attempt for a in attempts],
            "waited_s": [a.waited_s for a in attempts],
        },
        prepare=False,  # see HOT_PATH_PLANNING
    ).fetchall()
    return {job_id for (job_id,) in rows}


# -- job_release_unstarted -- jobs a worker claimed when it fetched their messages but never
# started (it is shutting down): queued again, and the attempt their claim counted is not spent.
JOB_RELEASE_UNSTARTED = """
UPDATE jobs j
   SET state = 'queued', attempts = j.attempts - 1, published_at = NULL, eta = now()
  FROM unnest(%(job_ids)s::bigint[], %(attempts)s::int[]) AS a(job_id, attempt)
 WHERE j.id = a.job_id AND j.state = 'running'
   AND j.worker_id = %(worker_id)s AND j.attempts = a.attempt
RETURNING j.id
"""


def job_release_unstarted(
    conn: psycopg.Connection, worker_id: str, attempts: list[StartedAttempt]
) -> list[int]:
    if not attempts:
        return []
    rows = conn.execute(
        JOB_RELEASE_UNSTARTED,
        {
            "worker_id": worker_id,
            "job_ids": [a.job_id for a in attempts],
            "attempts": [a.attempt for a in attempts],
        },
    ).fetchall()
    return [job_id for (job_id,) in rows]


def job_start(
    conn: psycopg.Connection, job_id: int, worker_id: str, message_id: str
) -> StartedAttempt | None:
    """Move a queued job to running; None when it is not queued (skip the message)."""
    return job_start_many(conn, worker_id, [(job_id, message_id)]).get(message_id)


def job_succeed(conn: psycopg.Connection, attempt: StartedAttempt, worker_id: str) -> bool:
    return attempt.job_id in job_succeed_many(conn, worker_id, [attempt])


# -- job_fail -- running -> retrying (eta = now + backoff) or dead, and the attempt's record.
JOB_FAIL = """
WITH done AS (
    UPDATE jobs
       SET state = CASE WHEN %(retry_in_s)s::float8 IS NULL THEN 'dead' ELSE 'retrying' END,
           eta = CASE WHEN %(retry_in_s)s::float8 IS NULL THEN eta
                      ELSE now() + make_interval(secs => %(retry_in_s)s::float8) END,
           published_at = NULL,
           last_error = %(error)s,
           started_at = started_at + make_interval(secs => %(waited_s)s::float8),
           finished_at = CASE WHEN %(retry_in_s)s::float8 IS NULL THEN now() END,
           dedup_lock = CASE WHEN %(retry_in_s)s::float8 IS NULL AND dedup_window IS NULL
                             THEN NULL ELSE dedup_lock END,
           dedup_until = CASE WHEN %(retry_in_s)s::float8 IS NULL THEN now() + dedup_window END
     WHERE id = %(job_id)s AND state = 'running'
       AND worker_id = %(worker_id)s AND attempts = %(attempt)s
 RETURNING id, attempts, worker_id, started_at)
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)
SELECT id, attempts, worker_id, started_at, now(), 'failed', %(error)s, %(traceback)s FROM done
"""


def job_fail(
    conn: psycopg.Connection,
    attempt: StartedAttempt,
    worker_id: str,
    *,
    error: str,
    traceback: str | None,
    retry_in_s: float | None,
) -> bool:
    """Record a failed attempt: retry after `retry_in_s` seconds, or dead when it is None."""
    cur = conn.execute(
        JOB_FAIL,
        {
            "job_id": attempt.job_id,
            "worker_id": worker_id,
            "attempt": attempt.attempt,
            "waited_s": attempt.waited_s,
            "error": error,
            "traceback": traceback,
            "retry_in_s": retry_in_s,
        },
    )
    return cur.rowcount == 1


# -- job_release_running -- give a job back to the queue because its run was cut short:
# its worker stopped heartbeating ('lost') or shut down before it finished ('interrupted').
# Crashes count as attempts: once they are used up the job is dead.
JOB_RELEASE_RUNNING = """
WITH victims AS MATERIALIZED (
    SELECT j.id FROM jobs j
     WHERE j.state = 'running' AND {condition}
     ORDER BY j.id
     LIMIT %(limit)s
       FOR UPDATE OF j SKIP LOCKED),
released AS (
    UPDATE jobs j
       SET state = CASE WHEN j.attempts >= j.max_attempts THEN 'dead' ELSE 'queued' END,
           published_at = NULL,
           eta = now(),
           last_error = %(error)s || coalesce(j.worker_id, '?'),
           finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
           dedup_lock = CASE WHEN j.attempts >= j.max_attempts AND j.dedup_window IS NULL
                             THEN NULL ELSE j.dedup_lock END,
           dedup_until = CASE WHEN j.attempts >= j.max_attempts THEN now() + j.dedup_window END
      FROM victims v
     WHERE j.id = v.id
 RETURNING j.id, j.attempts, j.worker_id, j.started_at, j.state, j.last_error),
recorded AS (
    INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
    SELECT id, attempts, worker_id, coalesce(started_at, now()), now(), %(outcome)s, last_error
      FROM released
    ON CONFLICT (job_id, attempt) DO NOTHING)
SELECT id, state FROM released
"""

# A job is lost when its worker has not heartbeat for `dead_after_s`; one that started less than
# that long ago is not (its worker may be younger than the last maintenance pass's look).
_LOST = """j.started_at < now() - make_interval(secs => %(dead_after_s)s::float8)
       AND NOT EXISTS (
           SELECT 1 FROM workers w
            WHERE w.worker_id = j.worker_id
              AND w.heartbeat_at > now() - make_interval(secs => %(dead_after_s)s::float8))"""


def recover_lost_jobs(
    conn: psycopg.Connection, dead_after_s: float, limit: int = 1000
) -> list[tuple[int, str]]:
    """Running jobs whose worker stopped heartbeating go back to queued (or dead): [(id, state)]."""
    query = JOB_RELEASE_RUNNING.format(condition=_LOST)
    return conn.execute(
        query,
        {
            "dead_after_s": dead_after_s,
            "limit": limit,
            "outcome": "lost",
            "error": "worker stopped heartbeating: ",
        },
    ).fetchall()


def give_back_running(conn: psycopg.Connection, worker_id: str) -> list[tuple[int, str]]:
    """A worker shutting down hands back the jobs it could not finish in its grace period."""
    query = JOB_RELEASE_RUNNING.format(condition="j.worker_id = %(worker_id)s")
    return conn.execute(
        query,
        {"worker_id": worker_id, "limit": 100_000, "outcome": "interrupted", "error": "worker shut down: "},
    ).fetchall()


# -- job_republish_stale -- the broker is a transport: a queued job handed to it long ago and
# still not started (a Redis restarted empty, a flushed queue) is handed to it again.
JOB_REPUBLISH_STALE = """
WITH stale AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE state = 'queued' AND published_at < now() - make_interval(secs => %(after_s)s::float8)
     ORDER BY published_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET published_at = NULL FROM stale WHERE j.id = stale.id
"""


def republish_stale(conn: psycopg.Connection, after_s: float, limit: int = 10_000) -> int:
    cur = conn.execute(JOB_REPUBLISH_STALE, {"after_s": after_s, "limit": limit})
    if cur.rowcount:
        conn.execute("SELECT pg_notify('skyport_jobs', '')")
    return cur.rowcount


# -- job_prune -- finished jobs past their retention (dead ones are kept longer).
JOB_PRUNE = """
WITH old AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE finished_at IS NOT NULL
       AND finished_at < now() - make_interval(days => 1) * CASE WHEN state = 'dead'
                                    THEN %(keep_dead_days)s::float8 ELSE %(keep_succeeded_days)s::float8 END
       AND (dedup_lock IS NULL OR dedup_until <= now())
     LIMIT %(limit)s)
DELETE FROM jobs j USING old WHERE j.id = old.id
"""


def prune_finished(
    conn: psycopg.Connection, keep_succeeded_days: float, keep_dead_days: float, limit: int = 10_000
) -> int:
    """Delete finished jobs past their retention, in batches; returns how many went."""
    total = 0
    while True:
        n = conn.execute(
            JOB_PRUNE,
            {"keep_succeeded_days": keep_succeeded_days, "keep_dead_days": keep_dead_days, "limit": limit},
        ).rowcount
        total += n
        if n < limit:
            return total


# ---- ops actions ------------------------------------------------------------------------------

# -- job_cancel -- any non-final state -> cancelled; the dedup key is released at once. The NOTIFY
# (sent at commit) tells the workers: one that claimed the job at fetch time and has not begun it
# on a thread drops it (workers/middleware.py, `_on_cancel`).
JOB_CANCEL = """
WITH cancelled AS (
    UPDATE jobs
       SET state = 'cancelled', finished_at = now(), dedup_lock = NULL, dedup_until = NULL,
           last_error = 'cancelled by ' || %(by)s
     WHERE id = %(job_id)s AND state IN ('scheduled', 'queued', 'retrying', 'running')
    RETURNING id)
SELECT pg_notify('skyport_cancel', id::text) FROM cancelled
"""


def job_cancel(conn: psycopg.Connection, job_id: int, by: str) -> bool:
    """Cancel a job that has not finished. A claimed job that no worker thread has begun does
    not run; a running attempt is not interrupted, but its outcome is ignored (the finish
    write expects 'running')."""
    return conn.execute(JOB_CANCEL, {"job_id": job_id, "by": by}).fetchone() is not None


# -- job_retry -- a dead or cancelled job goes back to queued with a fresh attempt budget; its
# history (job_attempts) stays. It takes its dedup key back, unless another job holds it now.
JOB_RETRY = """
UPDATE jobs
   SET state = 'queued', eta = now(), published_at = NULL, finished_at = NULL,
       max_attempts = attempts + %(extra_attempts)s,
       dedup_lock = dedup_key, dedup_until = NULL
 WHERE id = %(job_id)s AND state IN ('dead', 'cancelled')
RETURNING id
"""


class DedupKeyTaken(Exception):
    """Another job holds the dedup key of the job being retried."""


def job_retry(conn: psycopg.Connection, job_id: int, extra_attempts: int) -> bool:
    """Retry a dead or cancelled job; False when it is not dead or cancelled (nothing changed)."""
    try:
        with conn.transaction():
            row = conn.execute(JOB_RETRY, {"job_id": job_id, "extra_attempts": extra_attempts}).fetchone()
            if row:
                conn.execute("SELECT pg_notify('skyport_jobs', '')")
    except psycopg.errors.UniqueViolation:
        raise DedupKeyTaken(f"job {job_id}: another unfinished job holds its dedup key") from None
    return row is not None


# ---- reads ------------------------------------------------------------------------------------

JOB_COLUMNS = """id, actor, queue, state, dedup_key, attempts, max_attempts, args, kwargs, eta,
    enqueued_at, enqueued_by, published_at, started_at, finished_at, worker_id, last_error,
    dedup_window, dedup_until"""


def get_job(conn: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        job = cur.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = %s", (job_id,)).fetchone()
        if job is None:
            return None
        job["history"] = cur.execute(
            "SELECT attempt, worker_id, started_at, finished_at, outcome, error, traceback"
            "  FROM job_attempts WHERE job_id = %s ORDER BY attempt",
            (job_id,),
        ).fetchall()
    return job


def list_jobs(
    conn: psycopg.Connection,
    *,
    state: str | None = None,
    actor: str | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    """Newest first, keyset-paginated by id."""
    if state is not None and state not in JobState.__members__.values():
        raise ValueError(f"unknown state {state!r}; one of {', '.join(JobState)}")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            f"""SELECT {JOB_COLUMNS} FROM jobs
                 WHERE (%(state)s::text IS NULL OR state = %(state)s)
                   AND (%(actor)s::text IS NULL OR actor = %(actor)s)
                   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
                 ORDER BY id DESC LIMIT %(limit)s""",
            {"state": state, "actor": actor, "before_id": before_id, "limit": limit},
        ).fetchall()


def count_by_state(conn: psycopg.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
    return {str(s): 0 for s in JobState} | dict(rows)


def now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]


# ---- bulk ops actions (dashboard) -------------------------------------------------------------

# -- jobs_retry_many -- dead or cancelled jobs back to queued, as job_retry does, in one statement.
JOBS_RETRY_MANY = """
UPDATE jobs
   SET state = 'queued', eta = now(), published_at = NULL, finished_at = NULL,
       max_attempts = attempts + %(extra_attempts)s,
       dedup_lock = dedup_key, dedup_until = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('dead', 'cancelled')
RETURNING id
"""


def jobs_retry_many(conn: psycopg.Connection, job_ids: list[int], extra_attempts: int) -> list[int]:
    """Retry those of `job_ids` that are dead or cancelled; returns the ids retried. When a dedup
    key is taken the batch falls back to one job at a time, skipping the jobs whose key is held."""
    try:
        with conn.transaction():
            rows = conn.execute(JOBS_RETRY_MANY, {"ids": job_ids, "extra_attempts": extra_attempts})
            retried = [r[0] for r in rows.fetchall()]
            if retried:
                conn.execute("SELECT pg_notify('skyport_jobs', '')")
        return retried
    except psycopg.errors.UniqueViolation:
        retried = []
        for job_id in job_ids:
            try:
                if job_retry(conn, job_id, extra_attempts):
                    retried.append(job_id)
            except DedupKeyTaken:
                continue
        return retried


# -- jobs_delete_finished -- delete finished jobs (their attempts cascade); a job still holding its
# dedup key inside its window is kept, so deleting never lets a duplicate in early.
JOBS_DELETE_FINISHED = """
DELETE FROM jobs
 WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('succeeded', 'dead', 'cancelled')
   AND (dedup_lock IS NULL OR dedup_until <= now())
RETURNING id
"""


def jobs_delete_finished(conn: psycopg.Connection, job_ids: list[int]) -> list[int]:
    """Delete those of `job_ids` that are finished; returns the ids deleted."""
    return [r[0] for r in conn.execute(JOBS_DELETE_FINISHED, {"ids": job_ids}).fetchall()]
