"""Payment webhooks against the real database: intake through the Starlette app (TestClient),
processing through the plain functions, reconciliation and the ops functions."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from starlette.testclient import TestClient

import config
from jobs import payments
from jobs.payments.apply import PAYMENT_EVENT_APPLY, PAYMENT_EVENT_FINISH, Outcome
from jobs.payments.events import parse_event, signature_header
from jobs.payments.simulator import create_demo_shipments, mismatches, plan_events

SECRET = "whsec_test_default"
URL = "/webhooks/payments/{}"


@pytest.fixture
def client(database_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET_ACME", "whsec_acme")
    config.get.cache_clear()
    from dashboard.app import create_app

    with TestClient(create_app()) as c:
        yield c


def event(
    shipment_id: uuid.UUID | str, type_: str = "payment.succeeded", amount: str = "125.50", **over
) -> dict:
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": type_,
        "created": int(time.time()),
        "data": {
            "transaction_id": f"txn_{uuid.uuid4().hex[:16]}",
            "idempotency_key": f"key_{uuid.uuid4().hex}",
            "shipment_id": str(shipment_id),
            "amount": amount,
            "currency": "USD",
            "payment_method": "credit_card",
            "failure_reason": None,
        },
    }
    body.update({k: v for k, v in over.items() if k != "data"})
    body["data"].update(over.get("data", {}))
    return body


def post(
    client: TestClient,
    body: dict | bytes,
    provider: str = "stripe",
    secret: str | list[str] = SECRET,
    timestamp: int | None = None,
    header: str | None = None,
):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    sig = header if header is not None else signature_header(secret, raw, timestamp)
    return client.post(URL.format(provider), content=raw, headers={"Skyport-Signature": sig})


def counts(conn: psycopg.Connection) -> tuple[int, int]:
    return (
        conn.execute("SELECT count(*) FROM payment_events").fetchone()[0],
        conn.execute("SELECT count(*) FROM jobs WHERE actor = 'process_payment_event'").fetchone()[0],
    )


def shipment(conn: psycopg.Connection, total: str = "500.00") -> uuid.UUID:
    sid = create_demo_shipments(conn, 1)[0][0]
    conn.execute(
        "UPDATE shipments SET total_cost = %s, amount_due = %s WHERE shipment_id = %s", (total, total, sid)
    )
    return sid


def paid(conn: psycopg.Connection, sid: uuid.UUID) -> tuple:
    return conn.execute(
        "SELECT amount_paid, amount_due, payment_status FROM shipments WHERE shipment_id = %s", (sid,)
    ).fetchone()


def receive(conn: psycopg.Connection, body: dict, provider: str = "stripe") -> int:
    raw = json.dumps(body).encode()
    return payments.receive(conn, provider, parse_event(raw), raw).event_pk


def process(conn: psycopg.Connection, body: dict, **kw) -> payments.Result:
    return payments.process_event(conn, receive(conn, body), **kw)


# ---- intake --------------------------------------------------------------------------------------


def test_accepted_event_is_stored_with_its_job_and_a_duplicate_changes_nothing(client, conn):
    body = event(uuid.uuid4())
    first = post(client, body)
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "accepted"
    row = conn.execute(
        "SELECT provider, event_id, event_type, status, payload->'data'->>'amount' FROM payment_events"
    ).fetchone()
    assert row == ("stripe", body["id"], "payment.succeeded", "received", "125.50")
    job = conn.execute(
        "SELECT dedup_key, state, args FROM jobs WHERE actor = 'process_payment_event'"
    ).fetchone()
    assert job[0] == f"payment-event:stripe:{body['id']}" and job[1] == "queued"
    again = post(client, body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert counts(conn) == (1, 1)
    # The same event id from another provider is another event.
    assert post(client, body, provider="acme", secret="whsec_acme").json()["status"] == "accepted"
    assert counts(conn) == (2, 2)


def test_a_batch_of_deliveries_stores_each_event_once_and_refuses_only_the_bad_body(conn):
    """The web process stores concurrent deliveries in shared batches (dashboard/webhooks.py)."""
    from dashboard import webhooks

    first, second = event(uuid.uuid4()), event(uuid.uuid4())
    receive(conn, first)  # received before: its copy in the batch is a duplicate
    bad = event(uuid.uuid4(), data={"failure_reason": "\u0000"})  # jsonb refuses it
    batch = [first, second, second, bad, {**second, "id": f"evt_{uuid.uuid4().hex}"}]
    deliveries = [("stripe", parse_event(raw), raw) for raw in (json.dumps(b).encode() for b in batch)]
    results = webhooks.store_deliveries(deliveries)
    assert [getattr(r, "duplicate", None) for r in results] == [True, False, True, None, False]
    assert isinstance(results[3], psycopg.DataError)
    assert counts(conn) == (3, 3)  # first, second, the last one; nothing of the bad body
    jobs = conn.execute(
        "SELECT args->>0, dedup_key, enqueued_by FROM jobs WHERE actor = 'process_payment_event' ORDER BY id"
    ).fetchall()
    events = dict(conn.execute("SELECT event_id, id::text FROM payment_events").fetchall())
    assert [(k, by) for _, k, by in jobs] == [
        (f"payment-event:stripe:{b['id']}", "webhook:stripe") for b in (first, second, batch[4])
    ]
    assert sorted(pk for pk, _, _ in jobs) == sorted(events.values())


def test_rotated_secrets_any_v1_matches(client, conn):
    assert post(client, event(uuid.uuid4()), secret=["whsec_old", SECRET]).status_code == 200
    assert post(client, event(uuid.uuid4()), secret=["whsec_old", "whsec_other"]).status_code == 401
    assert counts(conn) == (1, 1)


def _bad_amount(amount):
    return event(uuid.uuid4(), data={"amount": amount})


@pytest.mark.parametrize(
    ("case", "status", "field"),
    [
        ("no signature", 401, None),
        ("wrong signature", 401, None),
        ("wrong secret", 401, None),
        ("stale timestamp", 401, None),
        ("future timestamp", 401, None),
        ("not json", 400, "body"),
        ("not an object", 400, "body"),
        ("three decimals", 400, "data.amount"),
        ("negative amount", 400, "data.amount"),
        ("zero amount", 400, "data.amount"),
        ("amount not a number", 400, "data.amount"),
        ("unknown type", 400, "type"),
        ("bad uuid", 400, "data.shipment_id"),
        ("no id", 400, "id"),
        ("bad currency", 400, "data.currency"),
        ("oversized", 413, None),
        ("nul character", 400, "body"),
    ],
)
def test_refused_requests_store_nothing(client, conn, case, status, field):
    body = event(uuid.uuid4())
    raw = json.dumps(body).encode()
    kw: dict = {}
    if case == "no signature":
        response = client.post(URL.format("stripe"), content=raw)
    else:
        if case == "wrong signature":
            kw["header"] = f"t={int(time.time())},v1={'0' * 64}"
        elif case == "wrong secret":
            kw["secret"] = "whsec_nope"
        elif case == "stale timestamp":
            kw["timestamp"] = int(time.time()) - 301
        elif case == "future timestamp":
            kw["timestamp"] = int(time.time()) + 400
        elif case == "not json":
            raw = b"{not json"
        elif case == "not an object":
            raw = b"[1, 2]"
        elif case == "three decimals":
            raw = json.dumps(_bad_amount("10.005")).encode()
        elif case == "negative amount":
            raw = json.dumps(_bad_amount("-5.00")).encode()
        elif case == "zero amount":
            raw = json.dumps(_bad_amount("0.00")).encode()
        elif case == "amount not a number":
            raw = json.dumps(_bad_amount("ten")).encode()
        elif case == "unknown type":
            raw = json.dumps(event(uuid.uuid4(), "payment.exploded")).encode()
        elif case == "bad uuid":
            raw = json.dumps(event("not-a-uuid")).encode()
        elif case == "no id":
            raw = json.dumps({**body, "id": ""}).encode()
        elif case == "bad currency":
            raw = json.dumps(event(uuid.uuid4(), data={"currency": "usd"})).encode()
        elif case == "nul character":  # valid JSON that jsonb refuses
            raw = json.dumps(event(uuid.uuid4(), data={"failure_reason": "\u0000"})).encode()
        elif case == "oversized":
            raw = json.dumps({**body, "padding": "x" * 70_000}).encode()
        response = post(client, raw, **kw)
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["field"] == field
    assert counts(conn) == (0, 0)


def test_unknown_provider_without_default_secret(client, conn, monkeypatch):
    monkeypatch.delenv("PAYMENT_WEBHOOK_SECRET")
    config.get.cache_clear()
    assert post(client, event(uuid.uuid4()), provider="stripe").status_code == 404
    assert post(client, event(uuid.uuid4()), provider="acme", secret="whsec_acme").status_code == 200
    assert counts(conn) == (1, 1)


# ---- processing ----------------------------------------------------------------------------------


def test_payment_lifecycle_and_late_events(conn):
    sid = shipment(conn, "500.00")
    processing = event(sid, "payment.processing", "200.00")
    key = processing["data"]["idempotency_key"]
    same = {"data": {"idempotency_key": key, "transaction_id": processing["data"]["transaction_id"]}}
    assert process(conn, processing).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("500.00"), "unpaid")
    assert process(conn, event(sid, "payment.succeeded", "200.00", **same)).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("200.00"), Decimal("300.00"), "partial")
    late = process(conn, event(sid, "payment.processing", "200.00", **same))
    assert late.outcome is Outcome.IGNORED and "already completed" in late.reason
    assert process(conn, event(sid, "payment.failed", "200.00", **same)).outcome is Outcome.IGNORED
    again = process(conn, event(sid, "payment.succeeded", "200.00", **same))  # new event id, same payment
    assert again.outcome is Outcome.IGNORED
    assert paid(conn, sid) == (Decimal("200.00"), Decimal("300.00"), "partial")
    assert process(conn, event(sid, "payment.succeeded", "300.00")).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("500.00"), Decimal("0.00"), "paid")
    txn = conn.execute(
        "SELECT transaction_status, external_transaction_id, gateway_provider, payment_method, amount "
        "FROM payment_transactions WHERE idempotency_key = %s",
        (key,),
    ).fetchone()
    assert txn == (
        "completed",
        processing["data"]["transaction_id"],
        "stripe",
        "credit_card",
        Decimal("200.00"),
    )
    statuses = dict(conn.execute("SELECT status, count(*) FROM payment_events GROUP BY status").fetchall())
    assert statuses == {"applied": 3, "ignored": 3}
    assert payments.drift(conn) == []


def test_refund_before_its_payment_waits_then_applies(conn):
    sid = shipment(conn, "100.00")
    pay = event(sid, "payment.succeeded", "100.00")
    refund = event(sid, "payment.refunded", "100.00", data=dict(pay["data"]))
    refund_pk = receive(conn, refund)
    waiting = payments.process_event(conn, refund_pk)
    assert waiting.outcome is Outcome.WAITING
    assert conn.execute(
        "SELECT status, attempts FROM payment_events WHERE id = %s", (refund_pk,)
    ).fetchone() == ("processing", 1)
    assert process(conn, pay).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("100.00"), Decimal("0.00"), "paid")
    assert payments.process_event(conn, refund_pk).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "refunded")
    assert payments.process_event(conn, refund_pk).outcome is Outcome.DONE_BEFORE
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "refunded")
    assert payments.drift(conn) == []


def test_failed_payment_marks_the_shipment_failed_and_a_refund_of_it_is_rejected(conn):
    sid = shipment(conn, "100.00")
    failed = event(sid, "payment.failed", "100.00", data={"failure_reason": "card_declined"})
    assert process(conn, failed).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "failed")
    refund = event(sid, "payment.refunded", "100.00", data=dict(failed["data"]))
    assert process(conn, refund).outcome is Outcome.REJECTED
    reason = conn.execute("SELECT failed_reason FROM payment_transactions").fetchone()[0]
    assert reason == "card_declined"


def test_unknown_shipment_waits_then_ends_unmatched_and_ops_can_replay(conn):
    sid = uuid.uuid4()
    body = event(sid, "payment.succeeded", "50.00")
    pk = receive(conn, body)
    assert payments.process_event(conn, pk, unmatched_after_s=3600).outcome is Outcome.WAITING
    result = payments.process_event(conn, pk, unmatched_after_s=0)
    assert result.outcome is Outcome.UNMATCHED and "not found" in result.reason
    problems = payments.problem_events(conn)
    assert [(p["event_id"], p["status"]) for p in problems] == [(body["id"], "unmatched")]
    # Ops creates the shipment under that id, then replays.
    other = shipment(conn, "80.00")
    conn.execute("UPDATE shipments SET shipment_id = %s WHERE shipment_id = %s", (sid, other))
    assert payments.replay_event(conn, "stripe", body["id"], by="alice") is True
    assert payments.replay_event(conn, "stripe", body["id"], by="alice") is False  # not a problem any more
    jobs = conn.execute(
        "SELECT count(*) FROM jobs WHERE dedup_key = %s", (f"payment-event:stripe:{body['id']}",)
    ).fetchone()[0]
    assert jobs == 1  # no worker ran the webhook's job here: it still holds the key, the replay reuses it
    assert payments.process_event(conn, pk, unmatched_after_s=0).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("50.00"), Decimal("30.00"), "partial")
    audit = conn.execute(
        "SELECT performed_by, reason FROM audit_log WHERE table_name = 'payment_events'"
    ).fetchall()
    assert audit == [("alice", "ops replay")]


def test_overpayment_is_rejected_and_the_shipment_untouched(conn):
    sid = shipment(conn, "100.00")
    assert process(conn, event(sid, "payment.succeeded", "60.00")).outcome is Outcome.APPLIED
    before = conn.execute("SELECT amount_paid, amount_due, payment_status, version FROM shipments").fetchone()
    result = process(conn, event(sid, "payment.succeeded", "60.00"))
    assert result.outcome is Outcome.REJECTED and "120.00 paid of a total of 100.00" in result.reason
    assert (
        conn.execute("SELECT amount_paid, amount_due, payment_status, version FROM shipments").fetchone()
        == before
    )
    assert conn.execute("SELECT count(*) FROM payment_transactions").fetchone()[0] == 1
    assert [p["status"] for p in payments.problem_events(conn)] == ["rejected"]


def test_key_reused_for_another_amount_or_currency_is_rejected(conn):
    sid = shipment(conn, "100.00")
    first = event(sid, "payment.succeeded", "10.00")
    assert process(conn, first).outcome is Outcome.APPLIED
    reused = event(
        sid, "payment.succeeded", "20.00", data={"idempotency_key": first["data"]["idempotency_key"]}
    )
    assert process(conn, reused).outcome is Outcome.REJECTED
    assert process(conn, event(sid, data={"currency": "EUR"})).outcome is Outcome.REJECTED
    assert paid(conn, sid)[0] == Decimal("10.00")


def test_same_event_and_same_payment_processed_concurrently_apply_once(conn, database_url):
    sid = shipment(conn, "1000.00")
    body = event(sid, "payment.succeeded", "100.00")
    pk = receive(conn, body)
    twins = [receive(conn, {**body, "id": f"evt_twin_{i}"}) for i in range(9)]  # same payment, new event ids
    results: list = []
    barrier = threading.Barrier(20)

    def run(event_pk: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            barrier.wait()
            results.append(payments.process_event(c, event_pk).outcome)

    threads = [threading.Thread(target=run, args=(p,)) for p in [pk] * 11 + twins]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results.count(Outcome.APPLIED) == 1
    assert paid(conn, sid)[0] == Decimal("100.00")
    assert conn.execute("SELECT count(*) FROM payment_transactions").fetchone()[0] == 1


# ---- reconciliation ------------------------------------------------------------------------------


def test_reconcile_requeues_stuck_events_and_reports_drift(conn):
    sid = shipment(conn, "100.00")
    pk = receive(conn, event(sid, "payment.succeeded", "40.00"))
    # The job is lost (cancelled by mistake); the event is old.
    conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = now(), dedup_lock = NULL")
    conn.execute("UPDATE payment_events SET received_at = now() - interval '10 minutes'")
    result = payments.reconcile(conn, stuck_after_s=60)
    assert result.requeued == [pk]
    assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0] == 1
    assert payments.reconcile(conn, stuck_after_s=60).requeued == []  # its new job holds the key
    assert payments.process_event(conn, pk).outcome is Outcome.APPLIED
    assert result.drifting == []
    conn.execute(
        "UPDATE shipments SET amount_paid = 55.00, amount_due = 45.00 WHERE shipment_id = %s", (sid,)
    )
    drift = payments.drift(conn)
    assert [(d["shipment_id"], d["amount_paid"], d["expected"]) for d in drift] == [
        (sid, Decimal("55.00"), Decimal("40.00"))
    ]
    assert payments.reconcile(conn).drifting == drift


# ---- the ledger over random orders ---------------------------------------------------------------


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


def check_plan(conn: psycopg.Connection, shipments: int, events: int, seed: int) -> None:
    rows = create_demo_shipments(conn, shipments, seed)
    plan = plan_events(
        rows, events=events, duplicates=0.10, out_of_order=0.3, failures=0.1, refunds=0.1, seed=seed
    )
    pks = [receive(conn, body) for body in plan.bodies]
    assert sum(pk is None for pk in pks) == len(plan.bodies) - plan.unique_events  # duplicates stored once
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


def test_event_writes_find_their_rows_by_primary_key_whatever_the_statistics(conn):
    """Statistics of a healthy system (no event open, no payment in `processing`) must not lead the
    planner to serve the writes' status guards from the open-events or payment-status index: once a
    backlog builds, each write would walk all of it (apply.PRIMARY_KEY_ONLY)."""
    check_plan(conn, shipments=20, events=200, seed=3)
    conn.execute("ANALYZE payment_events, payment_transactions")
    pk, txn = conn.execute(
        "SELECT e.id, t.transaction_id FROM payment_events e"
        "  JOIN payment_transactions t USING (idempotency_key) LIMIT 1"
    ).fetchone()
    writes = {
        "transaction_id": txn, "expected": "processing", "key": "k", "shipment_id": None,
        "external_id": None, "amount": Decimal("1.00"), "currency": "USD", "method": None,
        "status": "completed", "provider": "stripe", "response": "{}", "failed_reason": None,
        "move_shipment": False, "delta": Decimal("0"), "payment_status": "paid",
        "expected_paid": Decimal("0"), "id": pk,
    }  # fmt: skip
    apply_plan = plan_of(conn, PAYMENT_EVENT_APPLY, writes)
    finish_plan = plan_of(conn, PAYMENT_EVENT_FINISH, {"id": pk, "status": "ignored", "error": None})
    for plan in (apply_plan, finish_plan):
        assert "payment_events_open_idx" not in plan and "idx_payments_status" not in plan, plan
        assert "Index Scan using payment_events_pkey" in plan, plan
    assert "Index Scan using payment_transactions_pkey" in apply_plan, apply_plan


def plan_of(conn: psycopg.Connection, statement: str, params: dict) -> str:
    return "\n".join(r[0] for r in conn.execute("EXPLAIN " + statement, params))
