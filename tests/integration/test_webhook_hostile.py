"""Hostile payment webhooks against the real database, through the Starlette app (TestClient), all
correctly signed: generated bodies (other encodings, deep nesting, huge numbers, NUL, lone
surrogates, wrong types, long strings) get a 4xx or a 200, never a 500, and a refusal stores
nothing; a hostile delivery in a shared intake batch fails alone, the valid ones get 200 and are
stored once."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from starlette.testclient import TestClient

import config
from jobs.payments.events import EventError, parse_event
from tests.integration.hostile_bodies import hostile_bodies
from tests.integration.payments_support import event
from tests.integration.test_payments_intake import SECRET, counts, post

HOSTILE = [
    json.dumps(event(uuid.uuid4(), data={"failure_reason": "déjà vu"}), ensure_ascii=False).encode("utf-16"),
    json.dumps(event(uuid.uuid4())).encode("utf-32"),
    b"[" * 1000 + b"]" * 1000,
    json.dumps({**event(uuid.uuid4()), "deep": json.loads("[" * 40 + "]" * 40)}).encode(),
    json.dumps(event(uuid.uuid4(), data={"failure_reason": "\x00"})).encode(),
    json.dumps(event(uuid.uuid4(), data={"failure_reason": "\ud800"})).encode(),
    json.dumps(event(uuid.uuid4(), data={"amount": "125.50\n"})).encode(),
    json.dumps(event(uuid.uuid4(), data={"amount": "١٢٥"})).encode(),
    json.dumps(event(uuid.uuid4())).replace('"125.50"', "1" * 5000).encode(),
]


@pytest.fixture
def client(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", SECRET)
    config.get.cache_clear()
    from dashboard.app import create_app

    with TestClient(create_app()) as c:
        yield c


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(raw=hostile_bodies())
def test_hostile_bodies_get_a_4xx_or_200_and_refusals_store_nothing(client, conn, raw):
    before = counts(conn)
    response = post(client, raw)
    assert response.status_code in (200, 400, 413), (response.status_code, response.text, raw[:200])
    answer = response.json()
    if response.status_code == 200:
        added = 1 if answer["status"] == "accepted" else 0
        assert counts(conn) == (before[0] + added, min(1, before[0] + added))
        stored = conn.execute("SELECT count(*) FROM payment_events WHERE event_id = %s", (answer["id"],))
        assert stored.fetchone()[0] == 1
        return
    assert counts(conn) == before
    assert answer["error"] and answer["detail"]
    if response.status_code == 400:
        assert answer["field"]
        with pytest.raises(EventError):  # the intake's own checks refused it, not the database
            parse_event(raw)


def _concurrently(calls: list[Callable[[], Any]]) -> list[Any]:
    results: list[Any] = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = calls[i]()
        except Exception as exc:  # the test client raises the app's errors: kept, to be seen
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def _poster(client: TestClient, body: dict | bytes) -> Callable[[], Any]:
    return lambda: post(client, body)


def _assert_stored_once(conn: psycopg.Connection, bodies: list[dict]) -> None:
    rows = conn.execute("SELECT event_id, count(*) FROM payment_events GROUP BY event_id").fetchall()
    assert dict(rows) == {b["id"]: 1 for b in bodies}
    assert counts(conn)[1] == 1


def test_hostile_deliveries_among_concurrent_valid_ones_fail_alone(client, conn):
    valid = [event(uuid.uuid4()) for _ in range(120)]
    raws = [json.dumps(b).encode() for b in valid] + HOSTILE
    responses = _concurrently([_poster(client, raw) for raw in raws])
    assert [r.status_code for r in responses[: len(valid)]] == [200] * len(valid)
    assert {r.json()["status"] for r in responses[: len(valid)]} == {"accepted"}
    for response in responses[len(valid) :]:
        assert response.status_code == 400 and response.json()["field"], response.text
    _assert_stored_once(conn, valid)


class _HeldWrites:
    """receive_many of the intake, held until released, recording each call's event ids: the
    intake's writers are all busy, so that the deliveries that come next share one batch."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail_alone: frozenset[str] = frozenset()) -> None:
        from dashboard import webhooks

        self.webhooks = webhooks
        self.real = webhooks.receive_many
        self.fail_alone = fail_alone
        self.release = threading.Event()
        self.calls: list[list[str]] = []
        self.lock = threading.Lock()
        monkeypatch.setattr(webhooks, "receive_many", self)

    def __call__(self, conn: psycopg.Connection, deliveries: list) -> list:
        ids = [e.id for _, e, *_ in deliveries]
        with self.lock:
            self.calls.append(ids)
        self.release.wait(30)
        if len(ids) == 1 and ids[0] in self.fail_alone:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return self.real(conn, deliveries)

    def wait(self, what: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 20
        while not what():
            assert time.monotonic() < deadline, (
                f"the intake did not get there: {self.calls}, {self.pending()}"
            )
            time.sleep(0.01)

    def pending(self) -> int:
        return sum(len(b._pending) for b in list(self.webhooks._batchers.values()))


def test_a_batch_that_fails_is_stored_delivery_by_delivery(client, conn, monkeypatch):
    """Past the intake's checks (as a parser bug would let them), bodies the database refuses share
    a batch with valid ones; one delivery's connection fails when alone: it gets 503 with
    Retry-After, the refused ones 400, every valid one 200, stored once."""
    from dashboard import webhooks

    monkeypatch.setattr(webhooks, "decode_body", json.loads)
    unlucky = event(uuid.uuid4())
    held = _HeldWrites(monkeypatch, fail_alone=frozenset([unlucky["id"]]))
    busy = [event(uuid.uuid4()) for _ in range(webhooks.DEFAULT_WRITERS)]
    valid = [event(uuid.uuid4()) for _ in range(30)]
    refused = [  # json.loads takes them, PostgreSQL does not
        json.dumps(event(uuid.uuid4(), data={"failure_reason": "\x00"})).encode(),
        json.dumps(event(uuid.uuid4(), data={"failure_reason": "\ud800"})).encode(),
        json.dumps({**event(uuid.uuid4()), "note": {"\x00": "\udfff"}}).encode(),
        json.dumps(event(uuid.uuid4())).encode("utf-16"),
    ]
    raws = [json.dumps(b).encode() for b in [*valid, unlucky]] + refused
    results: list[Any] = []
    first = threading.Thread(target=lambda: results.extend(_concurrently([_poster(client, b) for b in busy])))
    rest = threading.Thread(target=lambda: results.extend(_concurrently([_poster(client, r) for r in raws])))
    try:
        first.start()
        held.wait(lambda: len(held.calls) >= webhooks.DEFAULT_WRITERS)  # every writer busy
        rest.start()
        held.wait(lambda: held.pending() == len(raws))
    finally:
        held.release.set()
        first.join(60)
        rest.join(60)
    by_id = {r.json().get("id"): r for r in results if r.status_code == 200}
    assert sorted(by_id) == sorted(b["id"] for b in [*busy, *valid])
    assert len(held.calls[webhooks.DEFAULT_WRITERS]) == len(raws)  # they shared one batch, which failed
    assert [r.status_code for r in results].count(400) == len(refused)
    (unavailable,) = [r for r in results if r.status_code == 503]
    assert unavailable.headers["Retry-After"] == str(webhooks.RETRY_AFTER_S)
    assert unavailable.json()["error"] == "database unavailable"
    _assert_stored_once(conn, [*busy, *valid])


def test_without_a_database_every_delivery_gets_503_with_retry_after(client, conn, monkeypatch):
    from dashboard import webhooks
    from db import pool

    def away(*args: Any, **kwargs: Any) -> Any:
        raise psycopg.OperationalError("connection refused")

    real = pool.connection
    monkeypatch.setattr(pool, "connection", away)
    bodies = [event(uuid.uuid4()) for _ in range(5)]
    responses = _concurrently([_poster(client, json.dumps(b).encode()) for b in bodies])
    assert {r.status_code for r in responses} == {503}
    assert {r.headers["Retry-After"] for r in responses} == {str(webhooks.RETRY_AFTER_S)}
    assert counts(conn) == (0, 0)
    monkeypatch.setattr(pool, "connection", real)  # back: the gateway's retry is stored
    assert post(client, json.dumps(bodies[0]).encode()).json()["status"] == "accepted"
