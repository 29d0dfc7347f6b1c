"""The console's rollup of the ledger (db/migrations/versions/0014_job_stats.py), kept by the
maintenance job `ledger_stats` (workers/stats.py)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata

EMPTY = sa.text("'{}'::integer[]")

# Per bucket (60, 900 or 3600 s), queue and actor: attempts, time histograms, queue depth.
job_stats = sa.Table(
    "job_stats",
    metadata,
    sa.Column("grain_s", sa.Integer, primary_key=True),
    sa.Column("bucket_at", sa.DateTime(timezone=True), primary_key=True),
    sa.Column("queue", sa.Text, primary_key=True),
    sa.Column("actor", sa.Text, primary_key=True),
    sa.Column("succeeded", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("failed", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("run_ms_hist", pg.ARRAY(sa.Integer), nullable=False, server_default=EMPTY),
    sa.Column("wait_ms_hist", pg.ARRAY(sa.Integer), nullable=False, server_default=EMPTY),
    sa.Column("depth", sa.Integer),
)

# Jobs per state when the rollup last counted them (the overview adds what finished since).
job_state_counts = sa.Table(
    "job_state_counts",
    metadata,
    sa.Column("state", sa.Text, primary_key=True),
    sa.Column("jobs", sa.BigInteger, nullable=False),
    sa.Column("counted_at", sa.DateTime(timezone=True), nullable=False),
)
