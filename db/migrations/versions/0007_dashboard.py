"""Indexes for the ops dashboard: keyset pages of the jobs list by queue, dedup key and time,
and failures per minute from job_attempts.

The ops verbs (retry, cancel, delete, run now, enable...) go into `audit_log.reason` and
`new_values`; `audit_log.action` keeps its CHECK (INSERT/UPDATE/DELETE) unchanged.

Revision ID: 0007_dashboard
Revises: 0003_schedule
"""

from alembic import op

revision = "0007_dashboard"
down_revision = "0003_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Jobs list filtered by queue, newest first (keyset on id).
        CREATE INDEX jobs_queue_id_idx ON jobs (queue, id);
        -- Jobs list filtered by dedup key (equality).
        CREATE INDEX jobs_dedup_key_idx ON jobs (dedup_key) WHERE dedup_key IS NOT NULL;
        -- Jobs list filtered by a time range; throughput per minute (enqueued).
        CREATE INDEX jobs_enqueued_at_idx ON jobs (enqueued_at);
        -- Failures per minute over the last hour / 24 h.
        CREATE INDEX job_attempts_finished_at_idx ON job_attempts (finished_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS job_attempts_finished_at_idx;
        DROP INDEX IF EXISTS jobs_enqueued_at_idx;
        DROP INDEX IF EXISTS jobs_dedup_key_idx;
        DROP INDEX IF EXISTS jobs_queue_id_idx;
        """
    )
