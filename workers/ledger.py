"""The job ledger's state transitions and reads, on a psycopg connection; the statements are
workers/ledger_sql.py's, ledger_reads_sql.py's and flow_sql.py's.

Every write names the state it expects (`WHERE state = 'running' AND worker_id = ... AND
attempts = ...`), so a late, duplicated or concurrent writer changes nothing.
A finished job releases its dedup key at once, or keeps it for `dedup_window` after finishing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.states import JobState
from workers import flow_sql
from workers import ledger_reads_sql as reads
from workers import ledger_sql as q

# Tracebacks longer than this are stored cut (the head and the end are kept).
MAX_TRACEBACK_CHARS = 20_000


@dataclass(frozen=True)
class StartedAttempt:
    job_id: int
    attempt: int
    max_attempts: int
    # Seconds between the job's claim (its started_at) and the moment a thread began running it:
    # a job claimed at fetch time waits for a thread (workers/consumer.py). Its outcome moves
    # started_at on by as much, so an attempt's duration is its run's.
    waited_s: float = 0.0
    # Claimed under a concurrency or rate limit (workers/flow_claim.py): its end frees a slot.
    limited: bool = False


# HOT_PATH_PLANNING: the batched statements of the hot path are not prepared, so each is planned
# for the table as it is now. psycopg prepares a statement after 5 executions and PostgreSQL then
# keeps a generic plan, built once: prepared while `jobs` was small or just emptied (a new
# deployment, a prune; autovacuum off or not there yet), it stays a seq scan or a walk of a
# whole index once the table holds thousands of rows (docs/benchmarks.md, throughput, measured
# at 244 jobs/s). Planning once per batch costs far less than that.


def wake_relays(conn: psycopg.Connection) -> None:
    """NOTIFY the relays (at commit): jobs wait to be published."""
    conn.execute(q.RELAY_WAKE, {"channel": q.RELAY_CHANNEL})


def job_start_many(
    conn: psycopg.Connection, worker_id: str, messages: list[tuple[int, str]]
) -> dict[str, StartedAttempt]:
    """Start the jobs of (job_id, message_id) pairs; the started ones by message id."""
    return started_of(job_start_send(conn, worker_id, messages), messages)


def job_start_send(
    conn: psycopg.Connection, worker_id: str, messages: list[tuple[int, str]]
) -> psycopg.Cursor:
    """JOB_START_MANY (JOB_START_ONE for one message) sent; `started_of` reads what it started (in
    pipeline mode, later)."""
    if len(messages) == 1:
        ((job_id, message_id),) = messages
        one = {"worker_id": worker_id, "job_id": job_id, "message_id": message_id}
        return conn.execute(q.JOB_START_ONE, one, prepare=False)  # see HOT_PATH_PLANNING
    params = job_start_params(worker_id, messages)
    return conn.execute(q.JOB_START_MANY, params, prepare=False)  # see HOT_PATH_PLANNING


def job_start_params(worker_id: str, messages: list[tuple[int, str]]) -> dict[str, Any]:
    """JOB_START_MANY's parameters."""
    return {
        "worker_id": worker_id,
        "job_ids": [job_id for job_id, _ in messages],
        "message_ids": [message_id for _, message_id in messages],
    }


def started_of(cursor: psycopg.Cursor, messages: list[tuple[int, str]]) -> dict[str, StartedAttempt]:
    by_message = {message_id: job_id for job_id, message_id in messages}
    rows = cursor.fetchall()
    return {m: StartedAttempt(by_message[m], attempts, max_attempts) for m, attempts, max_attempts, _ in rows}


def job_succeed_many(
    conn: psycopg.Connection, worker_id: str, attempts: list[StartedAttempt]
) -> set[tuple[int, int]]:
    """Record successful attempts; returns the (job id, attempt) of those recorded (a late outcome
    of attempt 1 can share a batch with the rerun's attempt 2, and only the rerun is the job's)."""
    if len(attempts) == 1:
        (a,) = attempts
        one = {"worker_id": worker_id, "job_id": a.job_id, "attempt": a.attempt, "waited_s": a.waited_s}
        recorded = conn.execute(q.JOB_SUCCEED_ONE, one, prepare=False).fetchall()  # HOT_PATH_PLANNING
        return {(job_id, attempt) for job_id, attempt in recorded}
    params = job_succeed_params(worker_id, attempts)
    rows = conn.execute(q.JOB_SUCCEED_MANY, params, prepare=False).fetchall()  # see HOT_PATH_PLANNING
    return {(job_id, attempt) for job_id, attempt in rows}


def job_succeed_params(worker_id: str, attempts: list[StartedAttempt]) -> dict[str, Any]:
    """JOB_SUCCEED_MANY's parameters."""
    return {
        "worker_id": worker_id,
        "job_ids": [a.job_id for a in attempts],
        "attempts": [a.attempt for a in attempts],
        "waited_s": [a.waited_s for a in attempts],
    }


def job_release_unstarted(
    conn: psycopg.Connection, worker_id: str, attempts: list[StartedAttempt], *, paused: bool = False
) -> list[int]:
    """Claimed jobs no thread began go back to queued; with `paused`, those of a paused queue or
    actor wait off the broker. One transaction: the pause rows stay share-locked until the jobs
    are parked, so a resume waits for them and lets them go (alone, a resume could commit between
    the two and leave them parked)."""
    if not attempts:
        return []
    with conn.transaction():
        if paused:
            conn.execute(flow_sql.FLOW_LOCK_PAUSES)
        rows = conn.execute(
            q.JOB_RELEASE_UNSTARTED,
            {
                "paused": paused,
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
    return (attempt.job_id, attempt.attempt) in job_succeed_many(conn, worker_id, [attempt])


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
    if traceback is not None and len(traceback) > MAX_TRACEBACK_CHARS:
        half = MAX_TRACEBACK_CHARS // 2
        traceback = f"{traceback[:half]}\n... cut ...\n{traceback[-half:]}"
    cur = conn.execute(
        q.JOB_FAIL,
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


def recover_lost_jobs(
    conn: psycopg.Connection, dead_after_s: float, limit: int = 1000
) -> list[tuple[int, str]]:
    """Running jobs whose worker stopped heartbeating go back to queued (or dead): [(id, state)]."""
    params = {
        "worker_id": None,
        "dead_after_s": dead_after_s,
        "limit": limit,
        "outcome": "lost",
        "error": "worker stopped heartbeating: ",
    }
    # Unprepared (as below), so always planned with its parameters: PostgreSQL keeps only the
    # CASE branch that applies (a generic plan of a prepared statement would have to keep both).
    return conn.execute(q.JOB_RELEASE_RUNNING, params, prepare=False).fetchall()


def give_back_running(conn: psycopg.Connection, worker_id: str) -> list[tuple[int, str]]:
    """A worker shutting down hands back the jobs it could not finish in its grace period."""
    params = {
        "worker_id": worker_id,
        "dead_after_s": None,
        "limit": 100_000,
        "outcome": "interrupted",
        "error": "worker shut down: ",
    }
    # Planned with worker_id known, its jobs are found by jobs_running_idx; with dead_after_s NULL
    # the NOT EXISTS on its heartbeat holds whatever the heartbeat (it is still beating).
    return conn.execute(q.JOB_RELEASE_RUNNING, params, prepare=False).fetchall()


def republish_stale(conn: psycopg.Connection, after_s: float, limit: int = 10_000) -> int:
    cur = conn.execute(q.JOB_REPUBLISH_STALE, {"after_s": after_s, "limit": limit})
    if cur.rowcount:
        wake_relays(conn)
    return cur.rowcount


def prune_finished(
    conn: psycopg.Connection, keep_succeeded_days: float, keep_dead_days: float, limit: int = 10_000
) -> int:
    """Delete finished jobs past their retention, in batches; returns how many went."""
    total = 0
    while True:
        n = conn.execute(
            q.JOB_PRUNE,
            {"keep_succeeded_days": keep_succeeded_days, "keep_dead_days": keep_dead_days, "limit": limit},
        ).rowcount
        total += n
        if n < limit:
            return total


# ---- ops actions ------------------------------------------------------------------------------


def job_cancel(conn: psycopg.Connection, job_id: int, by: str) -> bool:
    """Cancel a job that has not finished. A claimed job that no worker thread has begun does
    not run; a running attempt is not interrupted, but its outcome is ignored (the finish
    write expects 'running')."""
    params = {"job_id": job_id, "by": by, "channel": q.CANCEL_CHANNEL}
    return conn.execute(q.JOB_CANCEL, params).fetchone() is not None


class DedupKeyTaken(Exception):
    """Another job holds the dedup key of the job being retried."""


def job_retry(conn: psycopg.Connection, job_id: int, extra_attempts: int) -> bool:
    """Retry a dead or cancelled job; False when it is not dead or cancelled (nothing changed)."""
    try:
        return bool(_retry(conn, [job_id], extra_attempts))
    except psycopg.errors.UniqueViolation:
        raise DedupKeyTaken(f"job {job_id}: another unfinished job holds its dedup key") from None


def jobs_retry_many(conn: psycopg.Connection, job_ids: list[int], extra_attempts: int) -> list[int]:
    """Retry those of `job_ids` that are dead or cancelled; returns the ids retried. When a dedup
    key is taken the batch falls back to one job at a time, skipping the jobs whose key is held."""
    try:
        return _retry(conn, job_ids, extra_attempts)
    except psycopg.errors.UniqueViolation:
        retried = []
        for job_id in job_ids:
            try:
                if job_retry(conn, job_id, extra_attempts):
                    retried.append(job_id)
            except DedupKeyTaken:
                continue
        return retried


def _retry(conn: psycopg.Connection, job_ids: list[int], extra_attempts: int) -> list[int]:
    """JOB_RETRY_MANY and the relays' wake-up, in one transaction; raises UniqueViolation when a
    dedup key is taken (then nothing changed)."""
    with conn.transaction():
        rows = conn.execute(q.JOB_RETRY_MANY, {"ids": job_ids, "extra_attempts": extra_attempts})
        retried = [job_id for (job_id,) in rows.fetchall()]
        if retried:
            wake_relays(conn)
    return retried


def jobs_delete_finished(conn: psycopg.Connection, job_ids: list[int]) -> list[int]:
    """Delete those of `job_ids` that are finished; returns the ids deleted."""
    return [r[0] for r in conn.execute(q.JOB_DELETE_FINISHED, {"ids": job_ids}).fetchall()]


# ---- reads ------------------------------------------------------------------------------------


def get_job(conn: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        job = cur.execute(reads.JOB_GET, (job_id,)).fetchone()
        if job is None:
            return None
        job["history"] = cur.execute(reads.ATTEMPT_LIST_OF_JOB, (job_id,)).fetchall()
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
            reads.JOB_LIST,
            {"state": state, "actor": actor, "before_id": before_id, "limit": limit},
        ).fetchall()


def count_jobs(conn: psycopg.Connection, *, state: str | None = None, actor: str | None = None) -> int:
    """How many jobs `list_jobs` would page through with these filters."""
    return conn.execute(reads.JOB_COUNT, {"state": state, "actor": actor}).fetchone()[0]


def claim_held(conn: psycopg.Connection, attempt: StartedAttempt, worker_id: str) -> bool:
    params = {"job_id": attempt.job_id, "worker_id": worker_id, "attempt": attempt.attempt}
    return conn.execute(q.JOB_CLAIM_HELD, params).fetchone()[0]


def attempts_of(conn: psycopg.Connection, job_ids: list[int]) -> dict[int, int]:
    return dict(conn.execute(reads.JOB_ATTEMPTS_OF, {"ids": job_ids}).fetchall())


def health(conn: psycopg.Connection) -> tuple[float, int]:
    """Seconds the oldest queued job has waited (0: none), jobs that went dead in the last hour."""
    oldest_queued_s = conn.execute(reads.JOB_OLDEST_QUEUED_AGE).fetchone()[0]
    dead_last_hour = conn.execute(reads.JOB_DEAD_RECENTLY, {"span": timedelta(hours=1)}).fetchone()[0]
    return float(oldest_queued_s or 0), dead_last_hour


def now(conn: psycopg.Connection) -> datetime:
    return conn.execute("SELECT now()").fetchone()[0]
