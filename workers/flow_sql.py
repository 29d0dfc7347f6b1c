"""Flow control's statements on the ledger (workers/flow_claim.py, workers/flow.py): jobs that
may not start now wait off the broker (paused, for a slot, for a rate start) and go again when
they may. The rules of workers/ledger_sql.py hold here: noun-first names, a comment with what each
does and the index it relies on, values always bound.
"""

from __future__ import annotations

# -- flow_lock_pauses -- share-locks the paused rows of flow_controls for the transaction, so that a
# resume (which updates them, then lets their jobs go) waits for a park in progress, and a park
# waiting for a resume sees it (flow_controls_pkey).
FLOW_LOCK_PAUSES = "SELECT 1 FROM flow_controls WHERE paused FOR SHARE"

# -- job_park -- queued jobs whose messages were fetched but that may not start now wait off the
# broker: `paused` (only if their queue or actor is still paused: FLOW_LOCK_PAUSES first; if not,
# they go back to the relay), `slot` (a concurrency limit), `rate` (their start reserved at `eta`).
# No attempt is spent (jobs_pkey).
JOB_PARK = """
UPDATE jobs j
   SET published_at = NULL,
       eta = coalesce(p.eta, j.eta),
       waiting_for = CASE WHEN p.reason <> 'paused' OR EXISTS (
                          SELECT 1 FROM flow_controls f
                           WHERE f.paused AND ((f.scope = 'queue' AND f.name = j.queue)
                                            OR (f.scope = 'actor' AND f.name = j.actor)))
                          THEN p.reason END
  FROM unnest(%(job_ids)s::bigint[], %(message_ids)s::text[], %(reasons)s::text[], %(etas)s::timestamptz[])
       AS p(job_id, message_id, reason, eta)
 WHERE j.id = p.job_id AND j.state = 'queued' AND j.message_id = p.message_id
RETURNING j.id, j.waiting_for
"""

# -- job_unstart -- jobs a claim under flow control started and must undo (over a concurrency
# limit, or a rate reserved them a later start): queued again off the broker, waiting for `reason`
# (and until `eta`), their attempt not spent (jobs_pkey).
JOB_UNSTART = """
UPDATE jobs j
   SET state = 'queued', attempts = j.attempts - 1, published_at = NULL,
       eta = coalesce(u.eta, now()), waiting_for = u.reason
  FROM unnest(%(job_ids)s::bigint[], %(attempts)s::int[], %(reasons)s::text[], %(etas)s::timestamptz[])
       AS u(job_id, attempt, reason, eta)
 WHERE j.id = u.job_id AND j.state = 'running'
   AND j.worker_id = %(worker_id)s AND j.attempts = u.attempt
"""

# -- job_next_reserved -- seconds until the next queued job not yet due to the relay: a start a rate
# reserved; NULL: none (jobs_publishable_idx, its first entry after now).
JOB_NEXT_RESERVED = """
SELECT extract(epoch FROM min(eta) - now()) FROM jobs
 WHERE published_at IS NULL AND state = 'queued' AND (waiting_for IS NULL OR waiting_for = 'rate')
   AND eta > now()
"""

# -- job_unstart_over -- after a claim started jobs under a concurrency limit, in its transaction
# and under the limit's lock: those of its own starts (`job_ids`) beyond the limit go back to
# queued, newest first, waiting for a slot, their attempt not spent (LIMIT 0 within the limit:
# nothing more is read). The scope is a queue (`queue`) or an actor, per key when `keyed`
# (jobs_running_actor_idx, jobs_running_idx; then jobs_pkey). Run unprepared: planned with its
# parameters, only the CASE branch that applies is kept.
JOB_UNSTART_OVER = """
WITH over AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE id = ANY(%(job_ids)s::bigint[]) AND state = 'running' AND worker_id = %(worker_id)s
     ORDER BY id DESC
     LIMIT greatest(0, (SELECT count(*) FROM jobs r
                         WHERE r.state = 'running'
                           AND CASE WHEN %(queue)s::text IS NOT NULL THEN r.queue = %(queue)s
                                    ELSE r.actor = %(actor)s AND (NOT %(keyed)s OR r.flow_key = %(key)s) END)
                       - %(limit)s))
UPDATE jobs j
   SET state = 'queued', attempts = j.attempts - 1, published_at = NULL, eta = now(), waiting_for = 'slot'
  FROM over
 WHERE j.id = over.id
RETURNING j.id
"""

# -- job_unpark_paused -- a queue or actor resumed: its paused jobs go back to the relay, but those
# whose other scope (actor or queue) is still paused (jobs_waiting_idx).
JOB_UNPARK_PAUSED = """
UPDATE jobs j SET waiting_for = NULL
 WHERE j.waiting_for = 'paused'
   AND CASE %(scope)s WHEN 'queue' THEN j.queue = %(name)s ELSE j.actor = %(name)s END
   AND NOT EXISTS (SELECT 1 FROM flow_controls f
                    WHERE f.paused AND ((f.scope = 'queue' AND f.name = j.queue)
                                     OR (f.scope = 'actor' AND f.name = j.actor)))
"""

# -- job_slot_waiters -- jobs waiting for a concurrency slot, per actor, queue and key
# (jobs_waiting_idx).
JOB_SLOT_WAITERS = """
SELECT actor, queue, flow_key, count(*) FROM jobs WHERE waiting_for = 'slot' GROUP BY 1, 2, 3
"""

# -- job_unpark_slots -- up to `limit` jobs waiting for a slot of an actor (and key) in a queue go
# back to the relay, best priority first (jobs_waiting_idx).
JOB_UNPARK_SLOTS = """
WITH freed AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE waiting_for = 'slot' AND actor = %(actor)s AND queue = %(queue)s
       AND flow_key IS NOT DISTINCT FROM %(flow_key)s
     ORDER BY priority, id
     LIMIT %(limit)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET waiting_for = NULL FROM freed WHERE j.id = freed.id
"""

# -- job_running_of_actors -- slots in use: running jobs per actor and key (jobs_running_actor_idx).
JOB_RUNNING_OF_ACTORS = """
SELECT actor, flow_key, count(*) FROM jobs
 WHERE state = 'running' AND actor = ANY(%(actors)s::text[]) GROUP BY 1, 2
"""

# -- job_running_of_queues -- running jobs per queue, for queue limits (jobs_running_idx: every
# running job, as many as the fleet has threads and prefetch).
JOB_RUNNING_OF_QUEUES = """
SELECT queue, count(*) FROM jobs
 WHERE state = 'running' AND queue = ANY(%(queues)s::text[]) GROUP BY 1
"""

# -- job_flow_table -- per queue and actor: waiting (queued, by what for), running (jobs_state_id_idx,
# then the rows of those states; the console and `skyport queues list`).
JOB_FLOW_TABLE = """
SELECT queue, actor,
       count(*) FILTER (WHERE state = 'queued') AS waiting,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE waiting_for = 'paused') AS waiting_paused,
       count(*) FILTER (WHERE waiting_for = 'slot') AS waiting_slot,
       count(*) FILTER (WHERE waiting_for = 'rate') AS waiting_rate
  FROM jobs WHERE state IN ('queued', 'running')
 GROUP BY 1, 2 ORDER BY 1, 2
"""
