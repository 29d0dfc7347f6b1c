"""Payment webhooks against the real database, intake: the Starlette app (TestClient) stores an
accepted event with its job once, batches of deliveries, rotated secrets, and refused requests
that store nothing."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

import config
from jobs.payments.events import parse_document, signature_header
from tests.integration.payments_support import event, receive

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
    """Events stored, and whether a job processes them (1: the intake's transactions of each
    0.25 s window share one drain job)."""
    drains = "SELECT (count(*) > 0)::int FROM jobs WHERE actor = 'drain_payment_events'"
    return conn.execute("SELECT count(*) FROM payment_events").fetchone()[0], conn.execute(drains).fetchone()[
        0
    ]


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
        "SELECT dedup_key, state, enqueued_by, args FROM jobs WHERE actor = 'drain_payment_events'"
    )
    key, state, by, args = job.fetchone()
    assert (key, state, by) == (f"payments-drain:t{args[0]}", "queued", "webhook:stripe")
    again = post(client, body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    assert counts(conn) == (1, 1)
    # The same event id from another provider is another event.
    assert post(client, body, provider="acme", secret="whsec_acme").json()["status"] == "accepted"
    assert counts(conn) == (2, 1)


def test_a_batch_of_deliveries_stores_each_event_once_and_refuses_only_the_bad_body(conn):
    """The web process stores concurrent deliveries in shared batches (dashboard/webhooks.py)."""
    from dashboard import webhooks

    first, second = event(uuid.uuid4()), event(uuid.uuid4())
    receive(conn, first)  # received before: its copy in the batch is a duplicate
    bad = event(uuid.uuid4(), data={"failure_reason": "\u0000"})  # jsonb refuses it
    batch = [first, second, second, bad, {**second, "id": f"evt_{uuid.uuid4().hex}"}]
    # Past parse_event's checks (which refuse the NUL): the database's refusal is the bad one's alone.
    raws = [json.dumps(b).encode() for b in batch]
    deliveries = [("stripe", parse_document(json.loads(raw)), raw) for raw in raws]
    results = webhooks.store_deliveries(deliveries)
    assert [getattr(r, "duplicate", None) for r in results] == [True, False, True, None, False]
    assert isinstance(results[3], psycopg.DataError)
    # first, second, the last one; nothing of the bad body. The receive before, the batch and the
    # bad body alone each had a transaction; the batch's and the others alone: a drain each.
    events = conn.execute("SELECT event_id FROM payment_events ORDER BY id").fetchall()
    assert [e for (e,) in events] == [b["id"] for b in (first, second, batch[4])]
    assert counts(conn)[1] == 1


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
        ("type not a string", 400, "type"),
        ("bad uuid", 400, "data.shipment_id"),
        ("no id", 400, "id"),
        ("bad currency", 400, "data.currency"),
        ("oversized", 413, None),
        ("nul character", 400, "data.failure_reason"),
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
        elif case == "type not a string":
            raw = json.dumps(event(uuid.uuid4(), 7)).encode()
        elif case == "bad uuid":
            raw = json.dumps(event("not-a-uuid")).encode()
        elif case == "no id":
            raw = json.dumps({**body, "id": ""}).encode()
        elif case == "bad currency":
            raw = json.dumps(event(uuid.uuid4(), data={"currency": "usd"})).encode()
        elif case == "nul character":  # valid JSON that jsonb would refuse
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
