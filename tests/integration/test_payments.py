"""Payment webhooks against the real database, the ledger over whole delivery plans: duplicated and
shuffled events in any order give the expected ledger, one event at a time or in batches, and the
writes find their rows by primary key whatever the statistics.

Intake, processing and reconciliation one by one: test_payments_intake.py,
test_payments_processing.py, test_payments_reconciliation.py.
"""

from __future__ import annotations

import random
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from demo.payments_simulator import create_demo_shipments, mismatches, plan_events
from jobs import payments
from jobs.payments.apply import Outcome
from jobs.payments.batch import PAYMENT_EVENT_OUTCOMES, PAYMENT_SHIPMENT_MOVE
from tests.integration.payments_support import receive


def drain(conn: psycopg.Connection, pks: list[int], rng: random.Random) -> None:
    """Process every event in a random order, again and again, until none waits."""
    open_pks = list(dict.fromkeys(pks))
    for _ in range(20):
        rng.shuffle(open_pks)
        waiting = [
            pk
            for pk in open_pks
            if payments.process_event(conn, pk, unmatched_after_s=3600).outcome is Outcome.WAITING
        ]
        if not waiting:
            return
        open_pks = waiting
    raise AssertionError(f"{len(open_pks)} events still waiting")


def check_plan(conn: psycopg.Connection, shipments: int, events: int, seed: int, batch: int = 0) -> None:
    """A plan's events received, then processed one by one in random orders, or in batches of
    `batch` (after the gateways' shuffle)."""
    rows = create_demo_shipments(conn, shipments, seed)
    plan = plan_events(
        rows,
        events=events,
        duplicates=0.10,
        out_of_order=0.3,
        failures=0.1,
        refunds=0.1,
        disputes=0.1,
        seed=seed,
    )
    pks = [receive(conn, body) for body in plan.bodies]
    assert sum(pk is None for pk in pks) == len(plan.bodies) - plan.unique_events  # duplicates stored once
    if batch:
        while payments.drain(conn, batch=batch, unmatched_after_s=3600).events:
            conn.execute("UPDATE payment_events SET next_attempt_at = now() WHERE status = 'processing'")
    else:
        drain(conn, [pk for pk in pks if pk is not None], random.Random(seed))
    assert mismatches(conn, plan.expected_paid) == []
    assert payments.drift(conn) == []
    assert not payments.problem_events(conn)


def test_thousand_events_hundred_shipments_duplicates_shuffled(conn):
    check_plan(conn, shipments=100, events=1000, seed=7)
    assert conn.execute("SELECT count(*) FROM payment_events").fetchone()[0] > 850


@hsettings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_any_delivery_order_gives_the_expected_ledger(conn, seed):
    check_plan(conn, shipments=10, events=120, seed=seed)


@hsettings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), batch=st.sampled_from([1, 7, 500]))
def test_batches_of_any_size_give_the_expected_ledger(conn, seed, batch):
    check_plan(conn, shipments=10, events=120, seed=seed, batch=batch)


def test_event_writes_find_their_rows_by_primary_key_whatever_the_statistics(conn):
    """Statistics of a healthy system (no event open, no payment in `processing`) must not lead the
    planner to serve the writes' status guards from the open-events or payment-status index: once a
    backlog builds, each write would walk all of it (batch.PAYMENT_EVENT_OUTCOMES)."""
    check_plan(conn, shipments=20, events=200, seed=3)
    conn.execute("ANALYZE payment_events, payment_transactions")
    pk, sid = conn.execute("SELECT id, shipment_id FROM payment_events LIMIT 1").fetchone()
    outcomes = {"id": [pk], "status": ["ignored"], "error": [None], "delay_s": [0.0]}
    moves = {"id": [sid], "paid": [Decimal("1.00")], "status": ["paid"], "expected": [Decimal("0")]}
    outcomes_plan = plan_of(conn, PAYMENT_EVENT_OUTCOMES, outcomes)
    assert "payment_events_open_idx" not in outcomes_plan and "due_idx" not in outcomes_plan, outcomes_plan
    assert "payment_events_pkey" in outcomes_plan, outcomes_plan
    assert "shipments_pkey" in plan_of(conn, PAYMENT_SHIPMENT_MOVE, moves)


def plan_of(conn: psycopg.Connection, statement: str, params: dict) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + statement, params))
