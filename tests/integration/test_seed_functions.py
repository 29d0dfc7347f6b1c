"""The seed's functions (as fixed by 0001_seed_schema) on real PostgreSQL, including under concurrency:
convert_quote_to_shipment, reserve_capacity, process_payment.

Concurrent callers are threads with a connection each, released together by a threading.Barrier;
every call is its own transaction (autocommit), as an application would make it.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors

THREADS = 8
BARRIER_TIMEOUT_S = 30

_COUNTRY_CODES = itertools.count(1)


# --- fixture data --------------------------------------------------------------------------------


def make_user(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO users (email, password_hash, user_type) VALUES (%s, 'x', 'business') RETURNING user_id",
        (f"{uuid.uuid4().hex}@example.com",),
    ).fetchone()[0]


def make_country(conn: psycopg.Connection) -> int:
    code = f"{next(_COUNTRY_CODES):03d}"  # unique within a run, 3 characters
    return conn.execute(
        "INSERT INTO countries (country_code, country_name) VALUES (%s, %s) RETURNING country_id",
        (code, f"Country {code}"),
    ).fetchone()[0]


def make_service(
    conn: psycopg.Connection,
    *,
    max_kg: Decimal | None = Decimal("1000"),
    max_m3: Decimal | None = Decimal("100"),
) -> int:
    return conn.execute(
        "INSERT INTO freight_services"
        " (service_name, service_type, max_daily_capacity_kg, max_daily_capacity_m3)"
        " VALUES ('Sea economy', 'sea', %s, %s) RETURNING service_id",
        (max_kg, max_m3),
    ).fetchone()[0]


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


# --- convert_quote_to_shipment -------------------------------------------------------------------


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


# --- reserve_capacity ----------------------------------------------------------------------------


def test_reserve_capacity_creates_the_day_from_the_service_limits(conn: psycopg.Connection) -> None:
    service_id = make_service(conn, max_kg=Decimal("100"), max_m3=Decimal("10"))
    day = date.today() + timedelta(days=3)

    def reserve(kg: str, m3: str) -> bool:
        return conn.execute(
            "SELECT reserve_capacity(%s, %s, %s, %s)", (service_id, day, Decimal(kg), Decimal(m3))
        ).fetchone()[0]

    assert reserve("60", "4") is True  # the seed returned FALSE here: no row for the day yet
    assert reserve("41", "1") is False  # weight would exceed 100
    assert reserve("10", "7") is False  # volume would exceed 10
    assert reserve("40", "6") is True  # exactly full
    assert reserve("0.01", "0") is False
    assert conn.execute(
        "SELECT reserved_weight_kg, reserved_volume_m3, max_weight_kg, max_volume_m3, version"
        " FROM capacity_bookings WHERE service_id = %s AND booking_date = %s",
        (service_id, day),
    ).fetchall() == [(Decimal("100"), Decimal("10"), Decimal("100"), Decimal("10"), 3)]

    with pytest.raises(errors.InvalidParameterValue):
        reserve("-1", "0")
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        conn.execute("SELECT reserve_capacity(-1, %s, 1, 1)", (day,))

    # A service without a configured capacity is not limited (as the table's checks say).
    unlimited = make_service(conn, max_kg=None, max_m3=None)
    assert (
        conn.execute("SELECT reserve_capacity(%s, %s, 1000000, 5000)", (unlimited, day)).fetchone()[0] is True
    )


def test_reserve_capacity_never_overbooks_under_concurrent_callers(
    conn: psycopg.Connection, database_url: str
) -> None:
    max_kg, max_m3 = Decimal("500"), Decimal("60")
    service_id = make_service(conn, max_kg=max_kg, max_m3=max_m3)
    day = date.today() + timedelta(days=10)  # no capacity_bookings row yet: created concurrently too
    attempts = 150

    def caller(index: int) -> Callable[[psycopg.Connection], list[tuple[Decimal, Decimal, bool]]]:
        def run(c: psycopg.Connection) -> list[tuple[Decimal, Decimal, bool]]:
            outcomes = []
            for k in range(attempts):
                kg = Decimal(1 + (index * 7 + k * 3) % 13)  # 1..13 kg
                m3 = Decimal((index + k) % 4) / 4  # 0..0.75 m3
                ok = c.execute(
                    "SELECT reserve_capacity(%s, %s, %s, %s)", (service_id, day, kg, m3)
                ).fetchone()[0]
                outcomes.append((kg, m3, ok))
            return outcomes

        return run

    results = run_concurrently(database_url, [caller(i) for i in range(THREADS)])

    for r in results:
        assert isinstance(r, list), r
    outcomes = [o for r in results for o in r]
    succeeded = [(kg, m3) for kg, m3, ok in outcomes if ok]
    assert 0 < len(succeeded) < len(outcomes), "the capacity must be exhausted for the test to mean anything"
    rows = conn.execute(
        "SELECT reserved_weight_kg, reserved_volume_m3, version FROM capacity_bookings"
        " WHERE service_id = %s AND booking_date = %s",
        (service_id, day),
    ).fetchall()
    assert len(rows) == 1
    reserved_kg, reserved_m3, version = rows[0]
    assert reserved_kg <= max_kg
    assert reserved_m3 <= max_m3
    assert reserved_kg == sum(kg for kg, _ in succeeded)
    assert reserved_m3 == sum(m3 for _, m3 in succeeded)
    # Each successful reservation updated the row once (and bumped its version by exactly one).
    assert version == 1 + len(succeeded)


# --- process_payment -----------------------------------------------------------------------------


def test_the_same_idempotency_key_twice_makes_one_transaction(conn: psycopg.Connection) -> None:
    shipment_id = make_shipment(conn, total=Decimal("250.00"))
    version = shipment_payment(conn, shipment_id)[3]

    first = pay(conn, shipment_id, Decimal("100.00"), "pay-1")
    again = pay(conn, shipment_id, Decimal("100.00"), "pay-1")

    assert again == first
    assert conn.execute(
        "SELECT transaction_id, amount, currency, transaction_type, transaction_status,"
        " processed_at IS NOT NULL FROM payment_transactions WHERE shipment_id = %s",
        (shipment_id,),
    ).fetchall() == [(first, Decimal("100.00"), "USD", "payment", "completed", True)]
    assert shipment_payment(conn, shipment_id) == (
        Decimal("100.00"),
        Decimal("150.00"),
        "partial",
        version + 1,
    )

    # The rest of the amount, under another key, pays the shipment off.
    pay(conn, shipment_id, Decimal("150.00"), "pay-2")
    assert shipment_payment(conn, shipment_id) == (Decimal("250.00"), Decimal("0.00"), "paid", version + 2)


def test_a_payment_beyond_the_total_cost_is_refused_and_changes_nothing(conn: psycopg.Connection) -> None:
    shipment_id = make_shipment(conn, total=Decimal("100.00"))
    pay(conn, shipment_id, Decimal("60.00"), "p-1")
    before = shipment_payment(conn, shipment_id)

    with pytest.raises(errors.CheckViolation, match="would bring"):
        pay(conn, shipment_id, Decimal("40.01"), "p-2")

    assert shipment_payment(conn, shipment_id) == before
    assert conn.execute("SELECT idempotency_key FROM payment_transactions").fetchall() == [("p-1",)]

    # A shipment without a total cost yet cannot take a payment.
    conn.execute("UPDATE shipments SET total_cost = NULL, amount_paid = 0, amount_due = NULL")
    with pytest.raises(errors.CheckViolation, match="total of NULL"):
        pay(conn, shipment_id, Decimal("1.00"), "p-3")


def test_process_payment_rejects_bad_input(conn: psycopg.Connection) -> None:
    shipment_id = make_shipment(conn)
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        pay(conn, uuid.uuid4(), Decimal("1.00"), "k-1")
    for amount in (Decimal("0"), Decimal("-5")):
        with pytest.raises(errors.InvalidParameterValue, match="must be > 0"):
            pay(conn, shipment_id, amount, "k-2")
    with pytest.raises(errors.InvalidParameterValue, match="differs from the shipment"):
        pay(conn, shipment_id, Decimal("1.00"), "k-3", currency="EUR")

    # A key already used for another payment is an error, not a silent success.
    pay(conn, shipment_id, Decimal("10.00"), "k-4")
    with pytest.raises(errors.UniqueViolation, match="used for another payment"):
        pay(conn, shipment_id, Decimal("11.00"), "k-4")
    with pytest.raises(errors.UniqueViolation, match="used for another payment"):
        pay(conn, make_shipment(conn), Decimal("10.00"), "k-4")
    assert shipment_payment(conn, shipment_id)[0] == Decimal("10.00")


def test_the_currency_defaults_to_the_shipments(conn: psycopg.Connection) -> None:
    shipment_id = make_shipment(conn)
    conn.execute("UPDATE shipments SET currency = 'EUR' WHERE shipment_id = %s", (shipment_id,))

    pay(conn, shipment_id, Decimal("5.00"), "eur-1")
    pay(conn, shipment_id, Decimal("5.00"), "eur-2", currency="EUR")

    assert conn.execute(
        "SELECT currency FROM payment_transactions WHERE shipment_id = %s ORDER BY idempotency_key",
        (shipment_id,),
    ).fetchall() == [("EUR",), ("EUR",)]


def test_concurrent_payments_with_the_same_key_make_one_transaction(
    conn: psycopg.Connection, database_url: str
) -> None:
    shipment_id = make_shipment(conn, total=Decimal("250.00"))
    version = shipment_payment(conn, shipment_id)[3]

    results = run_concurrently(
        database_url, [lambda c: pay(c, shipment_id, Decimal("75.00"), "same-key") for _ in range(THREADS)]
    )

    assert all(isinstance(r, uuid.UUID) for r in results), results
    assert len(set(results)) == 1
    assert conn.execute(
        "SELECT transaction_id FROM payment_transactions WHERE shipment_id = %s", (shipment_id,)
    ).fetchall() == [(results[0],)]
    assert shipment_payment(conn, shipment_id) == (
        Decimal("75.00"),
        Decimal("175.00"),
        "partial",
        version + 1,
    )


def test_concurrent_payments_with_different_keys_are_all_applied(
    conn: psycopg.Connection, database_url: str
) -> None:
    shipment_id = make_shipment(conn, total=Decimal("250.00"))
    version = shipment_payment(conn, shipment_id)[3]

    results = run_concurrently(
        database_url,
        [lambda c, i=i: pay(c, shipment_id, Decimal("25.00"), f"key-{i}") for i in range(THREADS)],
    )

    assert all(isinstance(r, uuid.UUID) for r in results), results
    assert len(set(results)) == THREADS
    paid = Decimal("25.00") * THREADS
    assert shipment_payment(conn, shipment_id) == (
        paid,
        Decimal("250.00") - paid,
        "partial",
        version + THREADS,
    )
