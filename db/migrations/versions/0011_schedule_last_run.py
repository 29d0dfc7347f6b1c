"""A schedule entry's newest run, scheduled tick or "run now", found by its dedup key.

Ticks carry the dedup key `cron:<entry>:<time>` and runs asked for by ops (`skyport schedule run`,
the console's "Run now") `manual:<entry>:<time>`. The partial index holds only those rows, by
entry name and id, so the periodic page, `skyport schedule list` and the scheduler's catch-up read
each entry's newest run with one index probe, and other jobs' writes pay nothing for it.

Revision ID: 0011_schedule_last_run
Revises: 0010_console_security
"""

from alembic import op

revision = "0011_schedule_last_run"
down_revision = "0010_console_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX jobs_schedule_run_idx ON jobs (split_part(dedup_key, ':', 2), id)
         WHERE dedup_key LIKE 'cron:%' OR dedup_key LIKE 'manual:%';
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX jobs_schedule_run_idx;")
