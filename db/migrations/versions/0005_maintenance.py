"""Partition and materialized-view maintenance: the history of view refreshes.

Revision ID: 0005_maintenance
Revises: 0003_schedule
"""

from alembic import op

revision = "0005_maintenance"
down_revision = "0003_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- One row per refresh of a materialized view (jobs/matviews): written 'running' when the
        -- refresh starts, finished with its outcome. The dashboard reads the last success per view.
        CREATE TABLE matview_refreshes (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            view_name    text NOT NULL,
            mode         text,
            started_at   timestamptz NOT NULL DEFAULT now(),
            finished_at  timestamptz,
            duration_s   double precision,
            rows         bigint,
            outcome      text NOT NULL,
            error        text,
            job_id       bigint,
            CONSTRAINT matview_refreshes_outcome_check
                CHECK (outcome IN ('running', 'succeeded', 'failed', 'skipped', 'abandoned')),
            CONSTRAINT matview_refreshes_mode_check CHECK (mode IN ('concurrent', 'plain')),
            CONSTRAINT matview_refreshes_finished_check
                CHECK ((outcome = 'running') = (finished_at IS NULL))
        );
        -- A view's history, newest first (staleness, pruning).
        CREATE INDEX matview_refreshes_view_started_idx ON matview_refreshes (view_name, started_at);
        -- The last successful refresh of a view.
        CREATE INDEX matview_refreshes_view_succeeded_idx ON matview_refreshes (view_name, started_at)
            WHERE outcome = 'succeeded';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS matview_refreshes")
