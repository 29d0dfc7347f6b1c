"""Helpers of the seed-function tests (test_seed_*.py): quotes and shipments made through the seed's
functions, calls of convert_quote_to_shipment and process_payment, and concurrent callers.

Concurrent callers are threads with a connection each, released together by a threading.Barrier;
every call is its own transaction (autocommit), as an application would make it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

import psycopg

from tests.integration.business_rows import make_country, make_service, make_user

THREADS = 8
BARRIER_TIMEOUT_S = 30


def make_quote(
    conn: psycopg.Connection, *, status: str = "accepted", price: Decimal | None = Decimal("250.00")
) -> uuid.UUID:
    """A quote from a new user, with cargo, for a new service between two new countries."""
    return conn.execute(
        """
        INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, is_residential,
                            cargo_description, cargo_weight, cargo_volume, quote_status, quoted_price,
                            quoted_at, valid_until)
        VALUES (%s, %s, %s, %s, TRUE, 'machine parts', 120.50, 2.25, %s, %s,
                CURRENT_TIMESTAMP, CURRENT_TIMESTAMP + interval '7 days')
        RETURNING quote_id
        """,
        (make_user(conn), make_country(conn), make_country(conn), make_service(conn), status, price),
    ).fetchone()[0]


def quote_version(conn: psycopg.Connection, quote_id: uuid.UUID) -> int:
    return conn.execute("SELECT version FROM quotes WHERE quote_id = %s", (quote_id,)).fetchone()[0]


def make_shipment(conn: psycopg.Connection, *, total: Decimal = Decimal("250.00")) -> uuid.UUID:
    quote_id = make_quote(conn, price=total)
    return convert(conn, quote_id, quote_version(conn, quote_id))


def convert(conn: psycopg.Connection, quote_id: uuid.UUID, version: int | None) -> uuid.UUID:
    return conn.execute("SELECT convert_quote_to_shipment(%s, %s)", (quote_id, version)).fetchone()[0]


def pay(
    conn: psycopg.Connection, shipment_id: uuid.UUID, amount: Decimal, key: str, currency: str | None = None
) -> uuid.UUID:
    if currency is None:  # the three-argument form: currency defaults to the shipment's
        return conn.execute("SELECT process_payment(%s, %s, %s)", (shipment_id, amount, key)).fetchone()[0]
    return conn.execute(
        "SELECT process_payment(%s, %s, %s, %s)", (shipment_id, amount, key, currency)
    ).fetchone()[0]


def shipment_payment(conn: psycopg.Connection, shipment_id: uuid.UUID) -> tuple:
    return conn.execute(
        "SELECT amount_paid, amount_due, payment_status, version FROM shipments WHERE shipment_id = %s",
        (shipment_id,),
    ).fetchone()


def run_concurrently(database_url: str, calls: list[Callable[[psycopg.Connection], Any]]) -> list[Any]:
    """Run each call in its own thread with its own autocommit connection, all released at once by a
    barrier; returns each call's result, or the psycopg error it raised."""
    barrier = threading.Barrier(len(calls), timeout=BARRIER_TIMEOUT_S)

    def worker(call: Callable[[psycopg.Connection], Any]) -> Any:
        with psycopg.connect(database_url, autocommit=True) as c:
            barrier.wait()
            try:
                return call(c)
            except psycopg.Error as exc:
                return exc

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return [f.result() for f in [pool.submit(worker, call) for call in calls]]
