"""The job ledger: one row per job, one row per attempt, one row per worker process.

States (see workers/states.py, the same spelling in Python): scheduled -> queued -> running ->
succeeded; running -> retrying -> queued ...; -> dead; non-final -> cancelled.
`dedup_lock` holds the dedup key while the key is blocked (non-final job, or inside its window
after it finished); a unique index on it is what makes dedup keys race-free.
"""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata
from db.states import FINAL_STATES, JOB_STATES, JobState  # noqa: F401  (re-exported)

ATTEMPT_OUTCOMES = ("succeeded", "failed", "lost", "interrupted")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(str(v)) for v in values)})"


jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("actor", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("args", pg.JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    sa.Column("kwargs", pg.JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("dedup_key", sa.Text),
    sa.Column("dedup_lock", sa.Text),
    sa.Column("dedup_window", sa.Interval),
    sa.Column("dedup_until", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("eta", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("message_id", sa.Text),
    sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("enqueued_by", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("worker_id", sa.Text),
    sa.Column("last_error", sa.Text),
    # Flow control (0013_flow_control): 0 first, 9 last; the actor's concurrency key; what a
    # queued job held back off the broker waits for.
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default=sa.text("0")),
    sa.Column("flow_key", sa.Text),
    sa.Column("waiting_for", sa.Text),
    sa.CheckConstraint(_in("state", JOB_STATES), name="jobs_state_check"),
    sa.CheckConstraint(
        f"({_in('state', FINAL_STATES)}) = (finished_at IS NOT NULL)", name="jobs_finished_at_check"
    ),
    sa.CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="jobs_attempts_check"),
    sa.CheckConstraint("priority BETWEEN 0 AND 9", name="jobs_priority_check"),
    sa.CheckConstraint("waiting_for IN ('paused', 'slot', 'rate')", name="jobs_waiting_for_check"),
)

# At most one job holds a dedup key (ON CONFLICT (dedup_lock) WHERE dedup_lock IS NOT NULL).
sa.Index(
    "jobs_dedup_lock_key", jobs.c.dedup_lock, unique=True, postgresql_where=jobs.c.dedup_lock.isnot(None)
)
# The relay's work: rows not yet handed to the broker, per state in eta order (0009).
sa.Index(
    "jobs_publishable_idx",
    jobs.c.state,
    jobs.c.eta,
    postgresql_where=sa.text(
        "published_at IS NULL AND state IN ('scheduled', 'queued', 'retrying') "
        "AND (waiting_for IS NULL OR waiting_for = 'rate')"
    ),
)
# Held-back jobs, found again by what they wait for (resume, a freed slot) (0013).
sa.Index(
    "jobs_waiting_idx",
    jobs.c.waiting_for,
    jobs.c.actor,
    jobs.c.queue,
    jobs.c.priority,
    jobs.c.id,
    postgresql_where=jobs.c.waiting_for.isnot(None),
)
# Concurrency slots in use: running jobs of an actor (and key) (0013).
sa.Index(
    "jobs_running_actor_idx", jobs.c.actor, jobs.c.flow_key, postgresql_where=sa.text("state = 'running'")
)
# The lifeline: running jobs per worker.
sa.Index("jobs_running_idx", jobs.c.worker_id, postgresql_where=sa.text("state = 'running'"))
# Queued jobs handed to the broker long ago and never started (republish).
sa.Index("jobs_published_queued_idx", jobs.c.published_at, postgresql_where=sa.text("state = 'queued'"))
# Listing by state (dashboard, CLI), newest first with keyset pagination.
sa.Index("jobs_state_id_idx", jobs.c.state, jobs.c.id)
sa.Index("jobs_actor_id_idx", jobs.c.actor, jobs.c.id)
# Pruning finished rows.
sa.Index("jobs_finished_at_idx", jobs.c.finished_at, postgresql_where=jobs.c.finished_at.isnot(None))
# The dashboard's jobs list filters (migration 0007_dashboard).
sa.Index("jobs_queue_id_idx", jobs.c.queue, jobs.c.id)
sa.Index("jobs_dedup_key_idx", jobs.c.dedup_key, postgresql_where=jobs.c.dedup_key.isnot(None))
sa.Index("jobs_enqueued_at_idx", jobs.c.enqueued_at)
# A schedule entry's newest run, tick (`cron:<entry>:...`) or "run now" (`manual:<entry>:...`) (0013).
sa.Index(
    "jobs_schedule_run_idx",
    sa.func.split_part(jobs.c.dedup_key, sa.literal_column("':'"), sa.literal_column("2")),
    jobs.c.id,
    postgresql_where=sa.text("dedup_key LIKE 'cron:%' OR dedup_key LIKE 'manual:%'"),
)

job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("job_id", sa.BigInteger, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("worker_id", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("traceback", sa.Text),
    sa.CheckConstraint(_in("outcome", ATTEMPT_OUTCOMES), name="job_attempts_outcome_check"),
)
# Failures per minute on the dashboard (migration 0007_dashboard).
sa.Index("job_attempts_finished_at_idx", job_attempts.c.finished_at)

workers = sa.Table(
    "workers",
    metadata,
    sa.Column("worker_id", sa.Text, primary_key=True),
    sa.Column("hostname", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("queues", pg.ARRAY(sa.Text)),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)
sa.Index("workers_heartbeat_at_idx", workers.c.heartbeat_at)

schedule_overrides = sa.Table(
    "schedule_overrides",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("changed_by", sa.Text, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)

# Pauses and run-time limits of queues and actors, fleet-wide (0013_flow_control).
flow_controls = sa.Table(
    "flow_controls",
    metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("paused", sa.Boolean, nullable=False, server_default=sa.text("false")),
    sa.Column("paused_reason", sa.Text),
    sa.Column("paused_by", sa.Text),
    sa.Column("paused_at", sa.DateTime(timezone=True)),
    sa.Column("concurrency", sa.Integer),
    sa.Column("changed_by", sa.Text, nullable=False),
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.CheckConstraint("scope IN ('queue', 'actor')", name="flow_controls_scope_check"),
    sa.CheckConstraint("concurrency >= 1", name="flow_controls_concurrency_check"),
)

# The next start each rate limit allows (GCRA), shared by every process (0013_flow_control).
flow_rates = sa.Table(
    "flow_rates",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("next_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
)
