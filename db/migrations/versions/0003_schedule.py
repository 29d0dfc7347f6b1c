"""The scheduler's persisted switches, and finding a schedule entry's ticks in the ledger.

Revision ID: 0003_schedule
Revises: 0002_job_ledger
"""

from alembic import op

revision = "0003_schedule"
down_revision = "0002_job_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Ops switch schedule entries on and off (dashboard, CLI); the code's table stays the default.
        CREATE TABLE schedule_overrides (
            name        text PRIMARY KEY,
            enabled     boolean NOT NULL,
            changed_by  text NOT NULL,
            changed_at  timestamptz NOT NULL DEFAULT now()
        );
        -- Jobs by who enqueued them ('scheduler:<entry>', 'ops:<user>', ...), newest first.
        CREATE INDEX jobs_enqueued_by_id_idx ON jobs (enqueued_by, id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX IF EXISTS jobs_enqueued_by_id_idx;
        DROP TABLE IF EXISTS schedule_overrides;
        """
    )
