"""Column builders and server defaults shared by the business tables (as 0001_seed_schema writes them)."""

from __future__ import annotations

import sqlalchemy as sa

NOW = sa.text("CURRENT_TIMESTAMP")
UUID_DEFAULT = sa.text("gen_random_uuid()")


def check_in(column: str, values: tuple[str, ...]) -> str:
    """The CHECK expression `column IN ('a', 'b', ...)`."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(), server_default=NOW),
        sa.Column("updated_at", sa.DateTime(), server_default=NOW),
    ]


def version() -> sa.Column:
    # Maintained by the increment_version trigger (users, quotes, shipments, capacity_bookings).
    return sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1"))
