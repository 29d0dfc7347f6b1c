"""Every statement on the ledger tables (`jobs`, `job_attempts`, `workers`), and the channels of
their NOTIFYs; the modules that run them import them from here. Names are noun-first (JOB_*,
ATTEMPT_*, WORKER_*); each comment says what the statement does and which index it relies on.
Values are always bound parameters. The reads for people and their tools (listings, the
console, the rollup) are in workers/ledger_reads_sql.py.
"""

from __future__ import annotations

# ---- channels ---------------------------------------------------------------------------------

# Wakes the relays: jobs are waiting to be published. The trigger jobs_notify_relay sends it too
# (db/migrations/versions/0009_ledger_hot_path.py; tests/integration/test_ledger.py checks both).
RELAY_CHANNEL = "skyport_jobs"
# A job was cancelled: one NOTIFY per job, its id as payload (JOB_CANCEL; workers/relay.py hears it).
CANCEL_CHANNEL = "skyport_cancel"

# -- relay_wake -- NOTIFY the relays (delivered at commit); run with {"channel": RELAY_CHANNEL}.
RELAY_WAKE = "SELECT pg_notify(%(channel)s, '')"

# ---- enqueue (workers/enqueue.py) -------------------------------------------------------------

# -- job_insert -- a batch in one statement; ids follow the input order (ORDER BY ord). A taken
# dedup key inserts nothing (jobs_dedup_lock_key is the arbiter).
JOB_INSERT = """
INSERT INTO jobs (actor, queue, args, kwargs, state, dedup_key, dedup_lock, dedup_window,
                  max_attempts, eta, enqueued_by, published_at, message_id, priority, flow_key)
SELECT i.actor, i.queue, i.args, i.kwargs, e.state,
       i.dedup_key, i.dedup_key, make_interval(secs => i.dedup_window_s),
       i.max_attempts, e.eta, %(enqueued_by)s,
       CASE WHEN %(send)s AND e.state = 'queued' THEN now() END,
       CASE WHEN %(send)s AND e.state = 'queued' THEN gen_random_uuid()::text END,
       i.priority, i.flow_key
  FROM unnest(%(actor)s::text[], %(queue)s::text[], %(args)s::jsonb[], %(kwargs)s::jsonb[],
              %(dedup_key)s::text[], %(dedup_window_s)s::float8[], %(delay_s)s::float8[],
              %(eta)s::timestamptz[], %(max_attempts)s::int[], %(priority)s::int2[],
              %(flow_key)s::text[])
       WITH ORDINALITY AS i(actor, queue, args, kwargs, dedup_key, dedup_window_s, delay_s,
                            eta, max_attempts, priority, flow_key, ord)
 CROSS JOIN LATERAL (SELECT d.eta, CASE WHEN d.eta > now() THEN 'scheduled' ELSE 'queued' END AS state
                       FROM (SELECT coalesce(i.eta, now() + make_interval(secs => coalesce(i.delay_s, 0)))
                             AS eta) d) e
 ORDER BY i.ord
    ON CONFLICT (dedup_lock) WHERE dedup_lock IS NOT NULL DO NOTHING
RETURNING id, dedup_lock, state, message_id
"""

# -- job_insert_one -- job_insert for a single job, with plain parameters (cheaper to send: the
# enqueue hot path; kept apart from job_insert on purpose). Arbiter jobs_dedup_lock_key.
JOB_INSERT_ONE = """
INSERT INTO jobs (actor, queue, args, kwargs, state, dedup_key, dedup_lock, dedup_window,
                  max_attempts, eta, enqueued_by, published_at, message_id, priority, flow_key)
SELECT %(actor)s, %(queue)s, %(args)s::jsonb, %(kwargs)s::jsonb, e.state,
       %(dedup_key)s, %(dedup_key)s, make_interval(secs => %(dedup_window_s)s::float8),
       %(max_attempts)s, e.eta, %(enqueued_by)s,
       CASE WHEN %(send)s AND e.state = 'queued' THEN now() END,
       CASE WHEN %(send)s AND e.state = 'queued' THEN gen_random_uuid()::text END,
       %(priority)s, %(flow_key)s
  FROM (SELECT d.eta, CASE WHEN d.eta > now() THEN 'scheduled' ELSE 'queued' END AS state
          FROM (SELECT coalesce(%(eta)s::timestamptz,
                                now() + make_interval(secs => coalesce(%(delay_s)s::float8, 0))) AS eta) d) e
    ON CONFLICT (dedup_lock) WHERE dedup_lock IS NOT NULL DO NOTHING
RETURNING id, dedup_lock, state, message_id
"""

# -- job_find_dedup -- the jobs holding some dedup keys, and whether their window has passed
# (jobs_dedup_lock_key).
JOB_FIND_DEDUP = """
SELECT dedup_lock, id, state, (finished_at IS NOT NULL AND dedup_until <= now()) AS expired
  FROM jobs WHERE dedup_lock = ANY(%s::text[])
"""

# -- job_release_expired_dedup -- a finished job whose window has passed lets go of its key
# (jobs_dedup_lock_key).
JOB_RELEASE_EXPIRED_DEDUP = """
UPDATE jobs SET dedup_lock = NULL
 WHERE dedup_lock = %s AND finished_at IS NOT NULL AND dedup_until <= now()
"""

# ---- relay (workers/relay.py) -----------------------------------------------------------------

# -- job_promote_due -- scheduled and retrying jobs whose eta passed become queued; the relay then
# claims them as any queued job (jobs_publishable_idx, (state, eta) WHERE published_at IS NULL).
JOB_PROMOTE_DUE = """
WITH due AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE published_at IS NULL AND state IN ('scheduled', 'retrying') AND eta <= now()
       AND (waiting_for IS NULL OR waiting_for = 'rate')  -- jobs_publishable_idx's condition
     ORDER BY eta
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET state = 'queued' FROM due WHERE j.id = due.id
"""

# -- job_claim_publishable -- queued rows not yet handed to the broker, marked published with a
# new message id, committed before the messages go out (asynchronously: a claim lost with a
# crash of the server only means the rows are published again). Jobs held back by a pause or a
# concurrency limit wait off the broker; a rate's reserved start is due at its eta (its message
# says so: `waiting_for` comes back). jobs_publishable_idx.
JOB_CLAIM_PUBLISHABLE = """
WITH due AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE published_at IS NULL AND state = 'queued' AND eta <= now()
       AND (waiting_for IS NULL OR waiting_for = 'rate')
     ORDER BY eta
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j
   SET published_at = now(), message_id = gen_random_uuid()::text
  FROM due
 WHERE j.id = due.id
RETURNING j.id, j.actor, j.queue, j.args, j.kwargs, j.message_id, j.priority, j.waiting_for,
          set_config('synchronous_commit', 'off', true)
"""

# -- job_unclaim -- the broker refused the batch: its rows wait for the next relay pass (jobs_pkey).
JOB_UNCLAIM = """
UPDATE jobs SET published_at = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND state = 'queued' AND message_id = ANY(%(message_ids)s::text[])
"""

# ---- worker hot path (workers/ledger.py, group-committed by workers/middleware.py) -------------

# -- job_start_many -- messages arrived: queued -> running, for a batch of one worker's messages
# (jobs_pkey). Also accepts the same message again (a retried statement whose first try
# committed), without counting a second attempt. Two messages for one job in a batch: the row is
# updated once and only one of them comes back (the other is skipped).
JOB_START_MANY = """
UPDATE jobs j
   SET state = 'running',
       attempts = j.attempts + (j.state = 'queued')::int,
       worker_id = %(worker_id)s,
       message_id = m.message_id,
       waiting_for = NULL,
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

# -- job_start_one -- job_start_many for a lone message (the fetch of a worker that is not busy):
# no join with unnest to plan, and a claim that costs a batched one's (jobs_pkey).
JOB_START_ONE = """
UPDATE jobs j
   SET state = 'running',
       attempts = j.attempts + (j.state = 'queued')::int,
       worker_id = %(worker_id)s,
       message_id = %(message_id)s,
       waiting_for = NULL,
       started_at = CASE WHEN j.state = 'queued' THEN now() ELSE j.started_at END
 WHERE j.id = %(job_id)s
   AND CASE j.state WHEN 'queued' THEN true
                    WHEN 'running' THEN j.worker_id = %(worker_id)s AND j.message_id = %(message_id)s
                    ELSE false END
RETURNING j.message_id, j.attempts, j.max_attempts,
          set_config('synchronous_commit', 'off', true)
"""

# -- job_succeed_many -- running -> succeeded, and the attempt's record, for a batch of one
# worker's attempts (jobs_pkey). The dedup key is released now, or after the job's window. Returns
# the attempts recorded: a batch may hold a late attempt of a job next to its rerun.
JOB_SUCCEED_MANY = """
WITH done AS (
    UPDATE jobs j
       SET state = 'succeeded', finished_at = now(), last_error = NULL,
           started_at = j.started_at + make_interval(secs => a.waited_s),
           dedup_lock  = CASE WHEN dedup_window IS NULL THEN NULL ELSE dedup_lock END,
           dedup_until = now() + dedup_window
      FROM unnest(%(job_ids)s::bigint[], %(attempts)s::int[], %(waited_s)s::float8[])
           AS a(job_id, attempt, waited_s)
     WHERE j.id = a.job_id AND j.state = 'running'
       AND j.worker_id = %(worker_id)s AND j.attempts = a.attempt
 RETURNING j.id, j.attempts, j.worker_id, j.started_at, j.finished_at)
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
SELECT id, attempts, worker_id, started_at, finished_at, 'succeeded' FROM done
RETURNING job_id, attempt
"""

# -- job_succeed_one -- job_succeed_many for a lone attempt, without the join (jobs_pkey).
JOB_SUCCEED_ONE = """
WITH done AS (
    UPDATE jobs j
       SET state = 'succeeded', finished_at = now(), last_error = NULL,
           started_at = j.started_at + make_interval(secs => %(waited_s)s::float8),
           dedup_lock  = CASE WHEN dedup_window IS NULL THEN NULL ELSE dedup_lock END,
           dedup_until = now() + dedup_window
     WHERE j.id = %(job_id)s AND j.state = 'running'
       AND j.worker_id = %(worker_id)s AND j.attempts = %(attempt)s
 RETURNING j.id, j.attempts, j.worker_id, j.started_at, j.finished_at)
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
SELECT id, attempts, worker_id, started_at, finished_at, 'succeeded' FROM done
RETURNING job_id, attempt
"""

# -- job_release_unstarted -- jobs a worker claimed when it fetched their messages but never
# started (it is shutting down, or their queue or actor was paused since): queued again, the
# attempt their claim counted not spent (jobs_pkey). With `paused`, a job whose queue or actor
# is paused waits off the broker (run FLOW_LOCK_PAUSES first in the transaction).
JOB_RELEASE_UNSTARTED = """
UPDATE jobs j
   SET state = 'queued', attempts = j.attempts - 1, published_at = NULL, eta = now(),
       waiting_for = CASE WHEN %(paused)s AND EXISTS (
                          SELECT 1 FROM flow_controls f
                           WHERE f.paused AND ((f.scope = 'queue' AND f.name = j.queue)
                                            OR (f.scope = 'actor' AND f.name = j.actor)))
                          THEN 'paused' END
  FROM unnest(%(job_ids)s::bigint[], %(attempts)s::int[]) AS a(job_id, attempt)
 WHERE j.id = a.job_id AND j.state = 'running'
   AND j.worker_id = %(worker_id)s AND j.attempts = a.attempt
RETURNING j.id
"""

# -- job_fail -- running -> retrying (eta = now + backoff) or dead (retry_in_s NULL), and the
# attempt's record (jobs_pkey).
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

# ---- lifeline and maintenance (workers/ledger.py, workers/lifeline.py) -------------------------

# -- job_release_running -- running jobs go back to the queue because their run was cut short,
# or die once their attempts are used up (crashes count). With `worker_id` (and `dead_after_s`
# NULL, so that the NOT EXISTS holds): that worker's jobs, it is shutting down ('interrupted';
# jobs_running_idx on worker_id). With `worker_id` NULL: the jobs whose worker has not heartbeat
# for `dead_after_s` and that started before that ('lost': its worker may be younger than the
# pass's look; jobs_running_idx, then workers_pkey). Run unprepared: planned with its
# parameters, only the CASE branch that applies is kept.
JOB_RELEASE_RUNNING = """
WITH victims AS MATERIALIZED (
    SELECT j.id FROM jobs j
     WHERE j.state = 'running'
       AND CASE WHEN %(worker_id)s::text IS NULL
                THEN j.started_at < now() - make_interval(secs => %(dead_after_s)s::float8)
                ELSE j.worker_id = %(worker_id)s END
       AND NOT EXISTS (
           SELECT 1 FROM workers w
            WHERE w.worker_id = j.worker_id
              AND w.heartbeat_at > now() - make_interval(secs => %(dead_after_s)s::float8))
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

# -- job_republish_stale -- the broker is a transport: a queued job handed to it long ago and
# still not started (a Redis restarted empty, a flushed queue) is handed to it again
# (jobs_published_queued_idx).
JOB_REPUBLISH_STALE = """
WITH stale AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE state = 'queued' AND published_at < now() - make_interval(secs => %(after_s)s::float8)
     ORDER BY published_at
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET published_at = NULL FROM stale WHERE j.id = stale.id
"""

# -- job_prune -- finished jobs past their retention, dead ones kept longer (jobs_finished_at_idx).
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

# -- worker_heartbeat -- a worker process says it is alive; its row is made at the first beat
# (workers_pkey).
WORKER_HEARTBEAT = """
INSERT INTO workers (worker_id, hostname, pid, queues) VALUES (%s, %s, %s, %s)
    ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = now()
"""

# -- worker_forget -- a worker that stopped cleanly removes its row (workers_pkey).
WORKER_FORGET = "DELETE FROM workers WHERE worker_id = %s"

# -- worker_prune_silent -- rows of workers silent ten times `dead_after_s` (workers_heartbeat_at_idx).
WORKER_PRUNE_SILENT = """
DELETE FROM workers WHERE heartbeat_at < now() - make_interval(secs => %s::float8) * 10
"""

# ---- ops actions (workers/ledger.py, for the dashboard and the CLI) ----------------------------

# -- job_cancel -- any non-final state -> cancelled, the dedup key released at once (jobs_pkey).
# The NOTIFY on CANCEL_CHANNEL (sent at commit) tells the workers: one that claimed the job at
# fetch time and has not begun it on a thread drops it (workers/middleware.py, `_on_cancel`).
JOB_CANCEL = """
WITH cancelled AS (
    UPDATE jobs
       SET state = 'cancelled', finished_at = now(), dedup_lock = NULL, dedup_until = NULL,
           waiting_for = NULL,
           last_error = 'cancelled by ' || %(by)s
     WHERE id = %(job_id)s AND state IN ('scheduled', 'queued', 'retrying', 'running')
    RETURNING id)
SELECT pg_notify(%(channel)s, id::text) FROM cancelled
"""

# -- job_cancelled_among -- which of these jobs (a worker's claimed, not yet begun) are cancelled:
# the relay's poll for job_cancel's NOTIFY when nothing can LISTEN (workers/relay.py; jobs_pkey).
JOB_CANCELLED_AMONG = "SELECT id FROM jobs WHERE id = ANY(%(ids)s::bigint[]) AND state = 'cancelled'"

# -- job_claim_held -- whether a worker still holds its claim on a job: running, on that worker, at
# that attempt. A claim that waited long for a thread may have been taken back (jobs_pkey).
JOB_CLAIM_HELD = """
SELECT EXISTS (SELECT 1 FROM jobs WHERE id = %(job_id)s AND state = 'running'
                  AND worker_id = %(worker_id)s AND attempts = %(attempt)s)
"""

# -- job_retry_many -- dead or cancelled jobs go back to queued with a fresh attempt budget; their
# history (job_attempts) stays, and a dead job's last error with it (a cancelled job's "cancelled
# by" is no error). Each takes its dedup key back: a key another job holds now fails the statement
# on jobs_dedup_lock_key. One job or many (jobs_pkey).
JOB_RETRY_MANY = """
UPDATE jobs
   SET state = 'queued', eta = now(), published_at = NULL, finished_at = NULL, waiting_for = NULL,
       last_error = CASE WHEN state = 'cancelled' THEN NULL ELSE last_error END,
       max_attempts = attempts + %(extra_attempts)s,
       dedup_lock = dedup_key, dedup_until = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('dead', 'cancelled')
RETURNING id
"""

# -- job_delete_finished -- delete finished jobs (their attempts cascade, job_attempts_pkey); a job
# still holding its dedup key inside its window is kept, so deleting never lets a duplicate in
# early (jobs_pkey).
JOB_DELETE_FINISHED = """
DELETE FROM jobs
 WHERE id = ANY(%(ids)s::bigint[]) AND state IN ('succeeded', 'dead', 'cancelled')
   AND (dedup_lock IS NULL OR dedup_until <= now())
RETURNING id
"""
