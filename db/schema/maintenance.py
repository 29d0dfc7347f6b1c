"""The maintenance family's table (db/migrations/versions/0005_maintenance.py)."""

from __future__ import annotations

import sqlalchemy as sa

from db.schema.base import metadata

REFRESH_OUTCOMES = ("running", "succeeded", "failed", "skipped", "abandoned")
REFRESH_MODES = ("concurrent", "plain")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


matview_refreshes = sa.Table(
    "matview_refreshes",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("view_name", sa.Text, nullable=False),
    sa.Column("mode", sa.Text),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    sa.Column("duration_s", sa.Double),
    sa.Column("rows", sa.BigInteger),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("job_id", sa.BigInteger),
    sa.CheckConstraint(_in("outcome", REFRESH_OUTCOMES), name="matview_refreshes_outcome_check"),
    sa.CheckConstraint(_in("mode", REFRESH_MODES), name="matview_refreshes_mode_check"),
    sa.CheckConstraint(
        "(outcome = 'running') = (finished_at IS NULL)", name="matview_refreshes_finished_check"
    ),
)
sa.Index("matview_refreshes_view_started_idx", matview_refreshes.c.view_name, matview_refreshes.c.started_at)
sa.Index(
    "matview_refreshes_view_succeeded_idx",
    matview_refreshes.c.view_name,
    matview_refreshes.c.started_at,
    postgresql_where=sa.text("outcome = 'succeeded'"),
)
