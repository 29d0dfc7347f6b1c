"""The console's rollup of the ledger: attempts, wait and run times, and queue depth per queue and
actor per minute, per 15 minutes and per hour; and a snapshot of the jobs per state.

The maintenance job `ledger_stats` (every minute) keeps both from `jobs` and `job_attempts`
(workers/stats.py), so the overview reads a few hundred small rows instead of the ledger.
Times are histograms: element i counts values in [1.5^(i-1), 1.5^i) milliseconds (0: below 1 ms).

Revision ID: 0014_job_stats
Revises: 0013_flow_control
"""

from alembic import op

revision = "0014_job_stats"
down_revision = "0013_flow_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE job_stats (
            grain_s       integer NOT NULL,      -- the bucket's length: 60, 900 or 3600 seconds
            bucket_at     timestamptz NOT NULL,  -- the bucket's start
            queue         text NOT NULL,
            actor         text NOT NULL,
            succeeded     integer NOT NULL DEFAULT 0,  -- attempts finished in the bucket
            failed        integer NOT NULL DEFAULT 0,
            run_ms_hist   integer[] NOT NULL DEFAULT '{}',  -- attempt run times
            wait_ms_hist  integer[] NOT NULL DEFAULT '{}',  -- first attempts: enqueue (or eta) to start
            depth         integer,               -- most jobs queued at a sample in the bucket
            PRIMARY KEY (grain_s, bucket_at, queue, actor)
        );
        CREATE TABLE job_state_counts (
            state       text PRIMARY KEY,
            jobs        bigint NOT NULL,
            counted_at  timestamptz NOT NULL
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE job_stats; DROP TABLE job_state_counts;")
