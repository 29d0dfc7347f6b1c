"""Batch processing against the real database: an event whose processing raises is retried and ends
dead on its own while the rest of its batch (its own shipment's events too) applies; ops see it and
replay it; a batch whose writes the database refuses is processed again event by event; two
drains at once apply each event once."""

from __future__ import annotations

import importlib
import threading
from decimal import Decimal

import psycopg
import pytest

from jobs import payments
from jobs.payments import batch
from jobs.payments.apply import apply_event
from jobs.payments.batch import MAX_ATTEMPTS
from tests.integration.payments_support import event, paid, receive, shipment

DUE_NOW = "UPDATE payment_events SET next_attempt_at = now() WHERE status IN ('received', 'processing')"


def test_an_event_that_raises_dies_alone_and_ops_replay_it(conn, monkeypatch: pytest.MonkeyPatch):
    sid, other = shipment(conn, "500.00"), shipment(conn, "500.00")
    bad = event(sid, "payment.succeeded", "100.00")
    good = [event(sid, "payment.succeeded", "50.00"), event(other, "payment.succeeded", "70.00")]
    pks = [receive(conn, b) for b in [bad, *good]]

    def buggy(ledger, ev, provider, response):  # a bug that only this event's data trips
        if ev.id == bad["id"]:
            raise ZeroDivisionError("a bug")
        return apply_event(ledger, ev, provider, response)

    monkeypatch.setattr(batch, "apply_event", buggy)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        payments.drain(conn, unmatched_after_s=3600)
        status, attempts, error = conn.execute(
            "SELECT status, attempts, error FROM payment_events WHERE id = %s", (pks[0],)
        ).fetchone()
        assert attempts == attempt and "ZeroDivisionError: a bug" in error
        assert status == ("dead" if attempt == MAX_ATTEMPTS else "processing")
        conn.execute(DUE_NOW)
    assert paid(conn, sid)[0] == Decimal("50.00") and paid(conn, other)[0] == Decimal("70.00")
    assert [(p["event_id"], p["status"]) for p in payments.problem_events(conn)] == [(bad["id"], "dead")]

    monkeypatch.undo()  # the bug fixed
    assert payments.replay_event(conn, "stripe", bad["id"], by="ops:alice")
    payments.drain(conn, unmatched_after_s=3600)
    assert paid(conn, sid) == (Decimal("150.00"), Decimal("350.00"), "partial")
    assert payments.problem_events(conn) == [] and payments.drift(conn) == []


def test_a_batch_the_database_refuses_is_applied_event_by_event(conn, monkeypatch: pytest.MonkeyPatch):
    sids = [shipment(conn, "500.00") for _ in range(3)]
    bodies = [event(sid, "payment.succeeded", "10.00") for sid in sids]
    for body in bodies:
        receive(conn, body)
    real = batch.write
    calls: list[int] = []

    def refusing(cur, ledgers, outcomes):  # the batch's statement fails (as a refused row would)
        calls.append(len(outcomes.rows))
        if len(outcomes.rows) > 1:
            cur.execute("SELECT 1 / 0")
        return real(cur, ledgers, outcomes)

    monkeypatch.setattr(batch, "write", refusing)
    monkeypatch.setattr(importlib.import_module("jobs.payments.drain"), "write", refusing)
    results = payments.drain(conn, unmatched_after_s=3600)
    assert calls[0] == 3 and calls[1:] == [1, 1, 1]
    assert results.applied == 3
    assert [paid(conn, sid)[0] for sid in sids] == [Decimal("10.00")] * 3


def test_two_drains_at_once_apply_each_event_once(conn, database_url):
    sids = [shipment(conn, "1000.00") for _ in range(20)]
    for sid in sids:
        for _ in range(5):
            receive(conn, event(sid, "payment.succeeded", "10.00"))
    barrier = threading.Barrier(2)

    def drain() -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            barrier.wait()
            payments.drain(own, batch=7, unmatched_after_s=3600)

    threads = [threading.Thread(target=drain) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    payments.drain(conn, unmatched_after_s=3600)  # what a drain left to the other (held) is due now
    assert {paid(conn, sid)[0] for sid in sids} == {Decimal("50.00")}
    assert conn.execute("SELECT count(*) FROM payment_transactions").fetchone()[0] == 100
    assert payments.drift(conn) == []


def test_a_key_reused_on_another_shipment_in_the_same_batch_is_rejected(conn):
    first, second = shipment(conn, "100.00"), shipment(conn, "100.00")
    body = event(first, "payment.succeeded", "10.00")
    reused = event(
        second, "payment.succeeded", "10.00", data={"idempotency_key": body["data"]["idempotency_key"]}
    )
    receive(conn, body)
    receive(conn, reused)
    payments.drain(conn, unmatched_after_s=3600)
    # Shipments of one batch go in no particular order: one of the two applies, the other is refused.
    assert sorted([paid(conn, first)[0], paid(conn, second)[0]]) == [Decimal("0.00"), Decimal("10.00")]
    (problem,) = payments.problem_events(conn)
    assert problem["status"] == "rejected" and "belongs to another payment" in problem["error"]
    assert conn.execute("SELECT count(*) FROM payment_transactions").fetchone()[0] == 1
