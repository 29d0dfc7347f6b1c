"""The seed's convert_quote_to_shipment (as fixed by 0001_seed_schema) on real PostgreSQL, including
under concurrency (threads released together: seed_support.run_concurrently).

The other seed functions: reserve_capacity in test_seed_reserve_capacity.py, process_payment in
test_seed_process_payment.py.
"""

from __future__ import annotations

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.integration.seed_support import (
    BARRIER_TIMEOUT_S,
    convert,
    make_quote,
    quote_version,
    run_concurrently,
)


def test_converting_an_accepted_quote_makes_one_shipment_with_a_fresh_tracking_number(
    conn: psycopg.Connection,
) -> None:
    quote_id = make_quote(conn)
    quote = conn.execute(
        "SELECT user_id, service_id, origin_country_id, destination_country_id, version FROM quotes"
        " WHERE quote_id = %s",
        (quote_id,),
    ).fetchone()

    shipment_id = convert(conn, quote_id, quote[4])

    shipments = conn.execute(
        """
        SELECT shipment_id, tracking_number, user_id, service_id, origin_country_id, destination_country_id,
               total_cost, amount_due, amount_paid, payment_status, shipment_status,
               cargo_description, cargo_weight, cargo_volume, is_residential_delivery
        FROM shipments WHERE quote_id = %s
        """,
        (quote_id,),
    ).fetchall()
    assert len(shipments) == 1
    (sid, tracking_number, *rest) = shipments[0]
    assert sid == shipment_id
    assert rest == [
        *quote[:4],
        Decimal("250.00"),
        Decimal("250.00"),
        Decimal("0"),
        "unpaid",
        "pending",
        "machine parts",
        Decimal("120.50"),
        Decimal("2.25"),
        True,
    ]
    year = datetime.now(UTC).year
    assert re.fullmatch(rf"ASL-{year}-\d{{7,}}", tracking_number), tracking_number

    # The tracking number is marked used, by this shipment; it is the only one allocated.
    assert conn.execute(
        "SELECT tracking_number, shipment_id, is_used, used_at IS NOT NULL FROM tracking_numbers"
    ).fetchall() == [(tracking_number, shipment_id, True, True)]
    # The quote is converted, pointing at the shipment, its version bumped exactly once.
    assert conn.execute(
        "SELECT quote_status, converted_to_shipment_id, converted_at IS NOT NULL, version FROM quotes"
        " WHERE quote_id = %s",
        (quote_id,),
    ).fetchone() == ("converted", shipment_id, True, quote[4] + 1)

    # Another quote gets another tracking number.
    other = convert(conn, (q := make_quote(conn)), quote_version(conn, q))
    other_number = conn.execute(
        "SELECT tracking_number FROM shipments WHERE shipment_id = %s", (other,)
    ).fetchone()[0]
    assert other_number != tracking_number


def test_a_second_conversion_with_the_old_version_fails(conn: psycopg.Connection) -> None:
    quote_id = make_quote(conn)
    old_version = quote_version(conn, quote_id)
    convert(conn, quote_id, old_version)

    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="already converted"):
        convert(conn, quote_id, old_version)
    # Not with the current version either.
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="already converted"):
        convert(conn, quote_id, quote_version(conn, quote_id))

    assert conn.execute("SELECT count(*) FROM shipments WHERE quote_id = %s", (quote_id,)).fetchone()[0] == 1
    # The failed attempts left no tracking number behind (their transaction rolled back).
    assert conn.execute("SELECT count(*) FROM tracking_numbers").fetchone()[0] == 1


def test_conversion_checks_version_status_and_existence(conn: psycopg.Connection) -> None:
    quote_id = make_quote(conn)
    version = quote_version(conn, quote_id)
    conn.execute("UPDATE quotes SET notes = 'edited' WHERE quote_id = %s", (quote_id,))  # version + 1

    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="version mismatch"):
        convert(conn, quote_id, version)
    with pytest.raises(errors.ObjectNotInPrerequisiteState, match="version mismatch"):
        convert(conn, quote_id, None)
    for status in ("pending", "quoted", "rejected", "expired"):
        other = make_quote(conn, status=status)
        with pytest.raises(errors.ObjectNotInPrerequisiteState, match=f"is {status}, not accepted"):
            convert(conn, other, quote_version(conn, other))
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        convert(conn, uuid.uuid4(), 1)
    assert conn.execute("SELECT count(*) FROM shipments").fetchone()[0] == 0

    shipment_id = convert(conn, quote_id, version + 1)
    assert conn.execute(
        "SELECT quote_id FROM shipments WHERE shipment_id = %s", (shipment_id,)
    ).fetchone() == (quote_id,)


def test_concurrent_conversions_of_the_same_quote_make_exactly_one_shipment(
    conn: psycopg.Connection, database_url: str
) -> None:
    quotes = [make_quote(conn) for _ in range(5)]
    for quote_id in quotes:
        version = quote_version(conn, quote_id)
        results = run_concurrently(
            database_url, [lambda c, q=quote_id, v=version: convert(c, q, v) for _ in range(2)]
        )

        winners = [r for r in results if isinstance(r, uuid.UUID)]
        losers = [r for r in results if not isinstance(r, uuid.UUID)]
        assert len(winners) == 1, results
        assert len(losers) == 1, results
        assert isinstance(losers[0], errors.ObjectNotInPrerequisiteState), results
        assert conn.execute(
            "SELECT shipment_id FROM shipments WHERE quote_id = %s", (quote_id,)
        ).fetchall() == [(winners[0],)]
        assert conn.execute(
            "SELECT converted_to_shipment_id FROM quotes WHERE quote_id = %s", (quote_id,)
        ).fetchone() == (winners[0],)
    assert conn.execute("SELECT count(*) FROM tracking_numbers WHERE is_used").fetchone()[0] == len(quotes)


def test_a_conversion_waiting_on_a_concurrent_one_fails_once_that_one_commits(
    conn: psycopg.Connection, database_url: str
) -> None:
    """The exact interleaving of the seed's race: the second conversion starts while the first one
    is still uncommitted. It must wait (quote row lock), then see the converted quote and fail."""
    quote_id = make_quote(conn)
    version = quote_version(conn, quote_id)

    with psycopg.connect(database_url) as first:  # a transaction left open
        first_shipment = convert(first, quote_id, version)
        with psycopg.connect(database_url, autocommit=True) as second:

            def second_conversion() -> Any:
                try:
                    return convert(second, quote_id, version)
                except psycopg.Error as exc:
                    return exc

            with ThreadPoolExecutor(max_workers=1) as pool:
                future = pool.submit(second_conversion)
                # Wait until the second conversion is blocked by the first transaction: a condition
                # on the server's lock table, polled (no timed sleep).
                deadline = time.monotonic() + BARRIER_TIMEOUT_S
                waiting = False
                while not waiting and not future.done() and time.monotonic() < deadline:
                    waiting = conn.execute(
                        "SELECT %s = ANY(pg_blocking_pids(%s))",
                        (first.info.backend_pid, second.info.backend_pid),
                    ).fetchone()[0]
                if not waiting:
                    first.rollback()  # release the second conversion before failing
                    pytest.fail(f"the second conversion did not wait for the first: {future.result()!r}")
                first.commit()
                outcome = future.result(timeout=BARRIER_TIMEOUT_S)

    assert isinstance(outcome, errors.ObjectNotInPrerequisiteState), outcome
    assert conn.execute("SELECT shipment_id FROM shipments").fetchall() == [(first_shipment,)]
