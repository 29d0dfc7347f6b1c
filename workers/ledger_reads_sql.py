"""The reads of the ledger tables (`jobs`, `job_attempts`, `workers`) for people and their tools:
a job and its attempts, listings, the console's pages, the scheduler's last ticks, the rollup and
the failures grouped. workers/ledger_sql.py holds the statements the runtime writes with; the same
rules hold here: noun-first names, a comment with what each does and the index it relies on,
values always bound. Two statements take a `{where}` condition: compose it with psycopg.sql
(`sql.SQL(JOB_LIST_PAGE).format(where=...)`), never with str.format.
"""

from __future__ import annotations

# ---- reads (workers/ledger.py) ----------------------------------------------------------------

# -- job_get -- one job (jobs_pkey).
JOB_GET = """
SELECT id, actor, queue, state, dedup_key, attempts, max_attempts, args, kwargs, eta,
       enqueued_at, enqueued_by, published_at, started_at, finished_at, worker_id, last_error,
       dedup_window, dedup_until, priority, flow_key, waiting_for
  FROM jobs WHERE id = %s
"""

# -- attempt_list_of_job -- a job's attempts, first first (job_attempts_pkey).
ATTEMPT_LIST_OF_JOB = """
SELECT attempt, worker_id, started_at, finished_at, outcome, error, traceback
  FROM job_attempts WHERE job_id = %s ORDER BY attempt
"""

# -- job_list -- newest first, keyset on id, optionally one state or actor (jobs_state_id_idx,
# jobs_actor_id_idx, else jobs_pkey backwards; the NULL tests fold away in a custom plan).
JOB_LIST = """
SELECT id, actor, queue, state, dedup_key, attempts, max_attempts, args, kwargs, eta,
       enqueued_at, enqueued_by, published_at, started_at, finished_at, worker_id, last_error,
       dedup_window, dedup_until
  FROM jobs
 WHERE (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(actor)s::text IS NULL OR actor = %(actor)s)
   AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
 ORDER BY id DESC LIMIT %(limit)s
"""

# -- job_count -- jobs matching the command line's filter (jobs_state_id_idx or jobs_actor_id_idx
# when filtered, else the table): asked only when a listing was cut at its limit.
JOB_COUNT = """
SELECT count(*) FROM jobs
 WHERE (%(state)s::text IS NULL OR state = %(state)s)
   AND (%(actor)s::text IS NULL OR actor = %(actor)s)
"""

# -- job_attempts_of -- attempts used so far by each of the jobs (primary key).
JOB_ATTEMPTS_OF = "SELECT id, attempts FROM jobs WHERE id = ANY(%(ids)s)"

# -- job_oldest_queued_age -- seconds the oldest queued job has waited, NULL: none; a job held by a
# pause ops made does not count (jobs_state_id_idx).
JOB_OLDEST_QUEUED_AGE = """
SELECT extract(epoch FROM now() - min(eta)) FROM jobs
 WHERE state = 'queued' AND waiting_for IS DISTINCT FROM 'paused'
"""

# ---- dashboard reads (dashboard/queries.py) ---------------------------------------------------

# -- job_list_page -- newest first, keyset on id; `{where}` is JobFilter.where(), composed with
# psycopg.sql. Each filter column has an (x, id) index (jobs_state_id_idx, jobs_actor_id_idx,
# jobs_queue_id_idx), a dedup key jobs_dedup_key_idx, the time range jobs_enqueued_at_idx.
JOB_LIST_PAGE = """
SELECT id, actor, queue, state, dedup_key, attempts, max_attempts, enqueued_at, enqueued_by,
       finished_at, left(last_error, 200) AS last_error,
       left(args::text, 120) AS args_preview, left(kwargs::text, 120) AS kwargs_preview
  FROM jobs
 WHERE {where} AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
 ORDER BY id DESC
 LIMIT %(limit)s
"""

# -- job_ids_matching -- the ids a "retry all dead matching" acts on, newest first; `{where}` as
# in job_list_page (the same indexes).
JOB_IDS_MATCHING = "SELECT id FROM jobs WHERE {where} ORDER BY id DESC LIMIT %(limit)s"

# -- job_dead_recently -- jobs that went dead in the last `span` (jobs_finished_at_idx).
JOB_DEAD_RECENTLY = """
SELECT count(*) FROM jobs WHERE finished_at > now() - %(span)s AND state = 'dead'
"""

# -- worker_list -- every worker process, its liveness and running jobs (jobs_running_idx).
WORKER_LIST = """
SELECT w.worker_id, w.hostname, w.pid, w.queues, w.started_at, w.heartbeat_at,
       w.heartbeat_at > now() - make_interval(secs => %(dead_after_s)s::float8) AS alive,
       coalesce(r.running, '[]'::json) AS running
  FROM workers w
  LEFT JOIN LATERAL (
        SELECT json_agg(json_build_object('id', j.id, 'actor', j.actor, 'started_at', j.started_at)
                        ORDER BY j.id) AS running
          FROM jobs j WHERE j.state = 'running' AND j.worker_id = w.worker_id) r ON true
 ORDER BY w.heartbeat_at DESC
"""

# ---- scheduler reads (scheduler/state.py) -----------------------------------------------------

# -- job_last_ticks -- the newest scheduled tick of each schedule entry (the scheduler's catch-up):
# one probe of jobs_schedule_run_idx per entry (its predicate is implied by the `cron:` prefix).
JOB_LAST_TICKS = """
SELECT n.name, j.id, j.dedup_key, j.state, j.enqueued_at, j.enqueued_by, j.finished_at, j.last_error
  FROM unnest(%(names)s::text[]) AS n(name)
  LEFT JOIN LATERAL (
        SELECT id, dedup_key, state, enqueued_at, enqueued_by, finished_at, last_error FROM jobs
         WHERE split_part(dedup_key, ':', 2) = n.name AND dedup_key LIKE 'cron:%%'
         ORDER BY id DESC LIMIT 1) j ON true
"""

# -- job_last_runs -- the newest run of each schedule entry, a tick or a run asked for by ops
# (`manual:<entry>:<time>`): the periodic page and `skyport schedule list`; jobs_schedule_run_idx.
JOB_LAST_RUNS = """
SELECT n.name, j.id, j.dedup_key, j.state, j.enqueued_at, j.enqueued_by, j.finished_at, j.last_error
  FROM unnest(%(names)s::text[]) AS n(name)
  LEFT JOIN LATERAL (
        SELECT id, dedup_key, state, enqueued_at, enqueued_by, finished_at, last_error FROM jobs
         WHERE split_part(dedup_key, ':', 2) = n.name
           AND (dedup_key LIKE 'cron:%%' OR dedup_key LIKE 'manual:%%')
         ORDER BY id DESC LIMIT 1) j ON true
"""

# ---- the console's rollup (workers/stats.py) ---------------------------------------------------

# -- attempt_stats_since -- attempts finished from `since` to `until`, counted per minute, queue, actor,
# outcome and histogram bucket of their run time and (first attempts) wait time: bucket i holds
# (1.5^(i-1), 1.5^i] ms, 0 holds 1 ms and less. The wait runs from the enqueue, or from the eta
# of a delayed job still on its first attempt (a retry moved the eta of the others)
# (job_attempts_finished_at_idx, then jobs_pkey).
ATTEMPT_STATS_SINCE = """
SELECT date_bin('1 minute', a.finished_at, timestamptz '2000-01-01') AS bucket_at, j.queue, j.actor,
       a.outcome = 'succeeded' AS ok,
       least(47, ceil(ln(greatest(extract(epoch FROM a.finished_at - a.started_at) * 1000, 1))
                      / ln(1.5))::int) AS run_b,
       CASE WHEN a.attempt = 1 THEN
            least(47, ceil(ln(greatest(extract(epoch FROM a.started_at - CASE
                WHEN j.attempts = 1 AND j.state <> 'retrying' THEN greatest(j.enqueued_at, j.eta)
                ELSE j.enqueued_at END) * 1000, 1)) / ln(1.5))::int) END AS wait_b,
       count(*) AS n
  FROM job_attempts a JOIN jobs j ON j.id = a.job_id
 WHERE a.finished_at >= %(since)s AND a.finished_at < %(until)s
 GROUP BY 1, 2, 3, 4, 5, 6
"""

# -- job_queued_depth -- jobs waiting for a worker now, per queue and actor (jobs_state_id_idx).
JOB_QUEUED_DEPTH = "SELECT queue, actor, count(*) FROM jobs WHERE state = 'queued' GROUP BY queue, actor"

# -- job_count_by_state_counted -- the rollup's snapshot of jobs per state: a scan of the table.
JOB_COUNT_BY_STATE_COUNTED = "SELECT state, count(*), now() FROM jobs GROUP BY state"

# -- job_count_states -- jobs in each of `states`, one index-only count each (jobs_state_id_idx).
JOB_COUNT_STATES = """
SELECT s.state, (SELECT count(*) FROM jobs j WHERE j.state = s.state)
  FROM unnest(%(states)s::text[]) AS s(state)
"""

# -- job_count_finished_since -- jobs in `state` that finished after `since` (jobs_finished_at_idx).
JOB_COUNT_FINISHED_SINCE = """
SELECT count(*) FROM jobs WHERE finished_at > %(since)s AND state = %(state)s
"""

# ---- failures grouped (dashboard/failures.py) ---------------------------------------------------

# -- job_dead_groups -- dead jobs grouped by their error: its first 300 characters with every run of
# digits as '#' (the same error about job 17 and job 18 is one group), most jobs first
# (jobs_state_id_idx: the dead jobs only).
JOB_DEAD_GROUPS = """
SELECT g.error_group, count(*) AS jobs, min(j.finished_at) AS first_seen, max(j.finished_at) AS last_seen,
       array_agg(DISTINCT j.actor) AS actors, array_agg(DISTINCT j.queue) AS queues,
       max(j.id) AS newest_id, (array_agg(j.last_error ORDER BY j.id DESC))[1] AS example
  FROM jobs j
 CROSS JOIN LATERAL (SELECT regexp_replace(left(coalesce(j.last_error, ''), 300), '[0-9]+', '#', 'g')
                            AS error_group) g
 WHERE j.state = 'dead'
 GROUP BY g.error_group
 ORDER BY count(*) DESC, max(j.finished_at) DESC
 LIMIT %(limit)s
"""

# -- job_dead_ids_in_group -- the dead jobs of one group of job_dead_groups, newest first
# (jobs_state_id_idx).
JOB_DEAD_IDS_IN_GROUP = """
SELECT id FROM jobs
 WHERE state = 'dead'
   AND regexp_replace(left(coalesce(last_error, ''), 300), '[0-9]+', '#', 'g') = %(error_group)s
 ORDER BY id DESC LIMIT %(limit)s
"""
