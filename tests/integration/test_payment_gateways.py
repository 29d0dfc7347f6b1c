"""Real gateways' callbacks through the Starlette app (TestClient) and the real database: Stripe signed
as PyPI `stripe` verifies it, Standard Webhooks signed by PyPI `standardwebhooks`, Paystack by its
documented scheme; a payment, a partial refund and a dispute opened then lost, posted shuffled and
duplicated, leave the shipment's amounts exactly right; another provider's signature gets 401; an
event type that moves no money is stored `ignored` with no job."""

from __future__ import annotations

import base64
import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
import standardwebhooks
import stripe
from starlette.testclient import TestClient

import config
from demo.gateway_formats import convert, headers
from jobs import payments
from tests.integration.payments_support import event, paid, shipment

STRIPE_SECRET = "whsec_stripe_test_5b1d0c"
PAYSTACK_SECRET = "sk_test_4f3a9e7c1b2d"
SVIX_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-test-key-32byt").decode()
SECRETS = {"stripe": STRIPE_SECRET, "paystack": PAYSTACK_SECRET, "standard": SVIX_SECRET}
PROVIDERS = {"stripe": "stripe", "paystack": "paystack", "svix": "standard"}


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name, kind in PROVIDERS.items():
        monkeypatch.setenv(f"PAYMENT_PROVIDER_{name.upper()}", kind)
        monkeypatch.setenv(f"PAYMENT_WEBHOOK_SECRET_{name.upper()}", f"whsec_old_rotated,{SECRETS[kind]}")
    config.get.cache_clear()
    from dashboard.app import create_app

    with TestClient(create_app()) as c:
        yield c


def stripe_header(raw: bytes) -> str:
    """A Stripe-Signature built as Stripe documents it, checked by the Stripe library itself."""
    header = headers("stripe", STRIPE_SECRET, raw)["Stripe-Signature"]
    assert stripe.Webhook.construct_event(raw.decode(), header, STRIPE_SECRET).id == json.loads(raw)["id"]
    return header


def standard_headers(raw: bytes) -> dict[str, str]:
    """webhook-* headers signed by the Standard Webhooks library."""
    msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
    signature = standardwebhooks.Webhook(SVIX_SECRET).sign(msg_id, now, raw)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


def signed(kind: str, raw: bytes) -> dict[str, str]:
    if kind == "stripe":
        return {"Stripe-Signature": stripe_header(raw)}
    if kind == "standard":
        return standard_headers(raw)
    return headers("paystack", PAYSTACK_SECRET, raw)


def post(client: TestClient, provider: str, body: dict, kind: str | None = None):
    raw = json.dumps(body).encode()
    return client.post(
        f"/webhooks/payments/{provider}", content=raw, headers=signed(kind or PROVIDERS[provider], raw)
    )


def lifecycle(sid: uuid.UUID, method: str) -> list[dict]:
    """A payment of 300.00, a refund of 50.00, a dispute of 100.00 opened then lost (internal events,
    in their natural order)."""
    pay = event(sid, "payment.processing", "300.00", data={"payment_method": method})
    same = {"data": {k: pay["data"][k] for k in ("transaction_id", "idempotency_key", "payment_method")}}
    refund = {"refund": {"id": f"re_{uuid.uuid4().hex[:20]}", "amount": "50.00"}}
    dispute = {"dispute": {"id": f"dp_{uuid.uuid4().hex[:20]}", "amount": "100.00"}}
    return [
        pay,
        event(sid, "payment.succeeded", "300.00", **same),
        event(sid, "payment.refunded", "300.00", data={**same["data"], **refund}),
        event(sid, "dispute.opened", "300.00", data={**same["data"], **dispute}),
        event(sid, "dispute.lost", "300.00", data={**same["data"], **dispute}),
    ]


def settle(conn: psycopg.Connection) -> None:
    """Drain the inbox until nothing is open (events that waited come due at once)."""
    for _ in range(10):
        payments.drain(conn, unmatched_after_s=3600)
        left = conn.execute(
            "UPDATE payment_events SET next_attempt_at = now() WHERE status IN ('received', 'processing')"
        ).rowcount
        if not left:
            return
    raise AssertionError("events still open")


@pytest.mark.parametrize(
    ("provider", "method"),
    [("stripe", "credit_card"), ("paystack", "mobile_money"), ("svix", "bank_transfer")],
)
def test_payment_refund_and_lost_dispute_shuffled_and_duplicated_leave_the_right_amounts(
    client, conn, provider, method
):
    sid = shipment(conn, "500.00")
    bodies = convert(lifecycle(sid, method), PROVIDERS[provider])
    deliveries = bodies + random.Random(provider).sample(bodies, 3)
    random.Random(7).shuffle(deliveries)
    answers = [post(client, provider, body) for body in deliveries]
    assert [a.status_code for a in answers] == [200] * len(deliveries), [a.text for a in answers]
    assert {a.json()["status"] for a in answers} == {"accepted", "duplicate"}
    settle(conn)
    assert paid(conn, sid) == (Decimal("150.00"), Decimal("350.00"), "partial")
    rows = conn.execute(
        "SELECT transaction_type, amount, transaction_status, payment_method, gateway_provider"
        "  FROM payment_transactions WHERE shipment_id = %s ORDER BY amount DESC",
        (sid,),
    ).fetchall()
    assert rows == [
        ("payment", Decimal("300.00"), "completed", method, provider),
        ("chargeback", Decimal("100.00"), "completed", None, provider),
        ("refund", Decimal("50.00"), "completed", None, provider),
    ]
    raw = conn.execute(
        "SELECT gateway_response FROM payment_transactions"
        " WHERE shipment_id = %s AND transaction_type = 'payment'",
        (sid,),
    ).fetchone()[0]
    assert raw in bodies  # the gateway's own body, as received
    assert payments.drift(conn) == []
    statuses = dict(conn.execute("SELECT status, count(*) FROM payment_events GROUP BY status").fetchall())
    # A `processing` delivered after its `succeeded` is ignored; every money movement applied.
    assert set(statuses) <= {"applied", "ignored"} and sum(statuses.values()) == len(bodies)
    assert statuses["applied"] >= 4


def test_a_won_dispute_puts_the_money_back_whatever_the_order(client, conn):
    sid = shipment(conn, "500.00")
    stream = lifecycle(sid, "credit_card")
    stream[-1]["type"] = "dispute.won"
    bodies = convert(stream[:2] + stream[3:], "stripe")
    for body in reversed(bodies):  # the closing first
        assert post(client, "stripe", body).status_code == 200
    settle(conn)
    assert paid(conn, sid) == (Decimal("300.00"), Decimal("200.00"), "partial")
    assert payments.drift(conn) == []


def test_refunds_never_take_more_than_was_paid(client, conn):
    sid = shipment(conn, "500.00")
    stream = lifecycle(sid, "credit_card")[:3]
    too_much = json.loads(json.dumps(stream[2]))
    too_much["id"], too_much["data"]["refund"] = (
        f"evt_{uuid.uuid4().hex}",
        {"id": "re_big", "amount": "260.00"},
    )
    for body in [*stream, too_much]:
        assert post(client, "svix", body).status_code == 200
    settle(conn)
    assert paid(conn, sid) == (Decimal("250.00"), Decimal("250.00"), "partial")
    (problem,) = payments.problem_events(conn)
    assert problem["status"] == "rejected" and "would take 310.00 off a payment of 300.00" in problem["error"]


def test_another_providers_signature_gets_401_and_stores_nothing(client, conn):
    body = convert(lifecycle(uuid.uuid4(), "credit_card")[1:2], "stripe")[0]
    raw = json.dumps(body).encode()
    for provider, kind in [
        ("paystack", "stripe"),
        ("svix", "stripe"),
        ("stripe", "paystack"),
        ("stripe", "standard"),
    ]:
        answer = client.post(f"/webhooks/payments/{provider}", content=raw, headers=signed(kind, raw))
        assert answer.status_code == 401, (provider, kind, answer.text)
    stale = {"Stripe-Signature": headers("stripe", STRIPE_SECRET, raw)["Stripe-Signature"].replace(
        f"t={int(time.time())}", f"t={int(time.time()) - 301}")}  # fmt: skip
    assert client.post("/webhooks/payments/stripe", content=raw, headers=stale).status_code == 401
    assert conn.execute("SELECT count(*) FROM payment_events").fetchone()[0] == 0


def test_unknown_event_types_are_stored_ignored_with_no_job(client, conn):
    jobs = "SELECT count(*) FROM jobs"
    before = conn.execute(jobs).fetchone()[0]
    customer = {"id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": "customer.created", "created": 1,
                "data": {"object": {"id": "cus_1", "object": "customer"}}}  # fmt: skip
    transfer = {"event": "transfer.success", "data": {"id": 77, "amount": 1000, "currency": "NGN"}}
    no_shipment = convert(lifecycle(uuid.uuid4(), "credit_card")[1:2], "stripe")[0]
    no_shipment["data"]["object"]["metadata"] = {}
    invoice = {"id": f"evt_{uuid.uuid4().hex}", "type": "invoice.paid", "created": 1, "data": {}}
    for provider, body in [
        ("stripe", customer), ("paystack", transfer), ("stripe", no_shipment), ("svix", invoice)
    ]:  # fmt: skip
        answer = post(client, provider, body)
        assert answer.status_code == 200 and answer.json()["status"] == "ignored", answer.text
    assert post(client, "stripe", customer).json()["status"] == "duplicate"
    rows = conn.execute(
        "SELECT event_type, status, normalized, error FROM payment_events ORDER BY id"
    ).fetchall()
    assert [(t, s, n) for t, s, n, _ in rows] == [
        ("customer.created", "ignored", None),
        ("transfer.success", "ignored", None),
        ("payment_intent.succeeded", "ignored", None),
        ("invoice.paid", "ignored", None),
    ]
    assert "no metadata.shipment_id" in rows[2][3]
    assert conn.execute(jobs).fetchone()[0] == before
