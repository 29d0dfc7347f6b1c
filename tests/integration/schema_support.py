"""Helpers of the seed-schema tests (test_schema*.py): Alembic's comparison of a database with the
metadata, the seed's function names, month arithmetic for partitions, and a shipment inserted directly."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import psycopg
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import config
from db.schema import metadata
from db.schema.business import include_object
from tests.integration.business_rows import make_country, make_service, make_user

SEED_FUNCTIONS = {
    "increment_version",
    "track_status_change",
    "generate_tracking_number",
    "reserve_capacity",
    "convert_quote_to_shipment",
    "process_payment",
    "register_external_tracking_event",
}


def autogenerate_diff(url: str) -> list:
    """Alembic's comparison of the database at `url` with db.schema.metadata (env.py's filter)."""
    engine = sa.create_engine(config.to_sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": include_object, "compare_type": True, "compare_server_default": True},
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def first_of_month(offset: int) -> date:
    """First day of the month `offset` months after the current month (UTC)."""
    today = datetime.now(UTC).date()
    index = today.year * 12 + today.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


def make_shipment(conn: psycopg.Connection, *, total_cost: Decimal | None = Decimal("100.00")) -> uuid.UUID:
    """A shipment inserted directly (the conversion from a quote is tested elsewhere)."""
    user_id, service = make_user(conn), make_service(conn)
    origin, destination = make_country(conn), make_country(conn)
    return conn.execute(
        """
        INSERT INTO shipments (tracking_number, user_id, service_id, origin_country_id,
                               destination_country_id, total_cost)
        VALUES (%s, %s, %s, %s, %s, %s) RETURNING shipment_id
        """,
        (f"T-{uuid.uuid4().hex}", user_id, service, origin, destination, total_cost),
    ).fetchone()[0]
