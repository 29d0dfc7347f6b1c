"""The seed's process_payment (as fixed by 0001_seed_schema) on real PostgreSQL: idempotency keys,
refused payments, the currency, and concurrent payments with the same or different keys."""

from __future__ import annotations

import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from tests.integration.seed_support import (
    THREADS,
    make_shipment,
    pay,
    run_concurrently,
    shipment_payment,
)


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
