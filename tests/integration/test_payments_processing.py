"""Payment webhooks against the real database, processing through the plain functions: the payment
lifecycle and late events, refunds, failures, unknown shipments and the ops replay, rejected
events, and the same payment processed concurrently."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import psycopg

from jobs import payments
from jobs.payments.apply import Outcome
from tests.integration.payments_support import event, paid, process, receive, shipment


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


def test_failed_payment_marks_the_shipment_failed_and_may_still_succeed(conn):
    # Stripe: a PaymentIntent whose attempt failed (payment_intent.payment_failed) is confirmed
    # again with another card and succeeds under the same id; a refund meanwhile waits for it.
    sid = shipment(conn, "100.00")
    failed = event(sid, "payment.failed", "100.00", data={"failure_reason": "card_declined"})
    same = {"data": {k: failed["data"][k] for k in ("idempotency_key", "transaction_id")}}
    assert process(conn, failed).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "failed")
    refund = event(sid, "payment.refunded", "100.00", data=dict(failed["data"]))
    refund_pk = receive(conn, refund)
    assert payments.process_event(conn, refund_pk).outcome is Outcome.WAITING
    reason = conn.execute("SELECT failed_reason FROM payment_transactions").fetchone()[0]
    assert reason == "card_declined"
    assert process(conn, event(sid, "payment.processing", "100.00", **same)).outcome is Outcome.IGNORED
    assert process(conn, event(sid, "payment.succeeded", "100.00", **same)).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("100.00"), Decimal("0.00"), "paid")
    assert process(conn, event(sid, "payment.failed", "100.00", **same)).outcome is Outcome.IGNORED
    assert payments.process_event(conn, refund_pk).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "refunded")
    assert payments.drift(conn) == []


def test_a_refund_of_a_cancelled_payment_is_rejected(conn):
    # Stripe cancels a PaymentIntent whose attempts failed: canceled is final, failed was not.
    sid = shipment(conn, "100.00")
    failed = event(sid, "payment.failed", "100.00")
    assert process(conn, failed).outcome is Outcome.APPLIED
    cancelled = event(sid, "payment.canceled", "100.00", data=dict(failed["data"]))
    assert process(conn, cancelled).outcome is Outcome.APPLIED
    refund = event(sid, "payment.refunded", "100.00", data=dict(cancelled["data"]))
    assert process(conn, refund).outcome is Outcome.REJECTED
    succeeded = event(sid, "payment.succeeded", "100.00", data=dict(cancelled["data"]))
    assert process(conn, succeeded).outcome is Outcome.IGNORED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "failed")


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
    assert payments.replay_event(conn, "stripe", body["id"], by="ops:alice") is True
    assert (
        payments.replay_event(conn, "stripe", body["id"], by="ops:alice") is False
    )  # not a problem any more
    jobs = conn.execute("SELECT enqueued_by FROM jobs WHERE actor = 'drain_payment_events' ORDER BY id")
    # The intake's drain, and the replay's (unless within the same 0.25 s window: then it is that one).
    assert jobs.fetchall() in ([("webhook:stripe",), ("ops:alice",)], [("webhook:stripe",)])
    assert payments.process_event(conn, pk, unmatched_after_s=0).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("50.00"), Decimal("30.00"), "partial")
    audit = conn.execute(
        "SELECT performed_by, reason FROM audit_log WHERE table_name = 'payment_events'"
    ).fetchall()
    assert audit == [("ops:alice", "replay")]


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


def test_a_dispute_lost_for_less_than_was_disputed_keeps_off_only_what_was_lost(conn):
    # Paystack: a merchant may accept a dispute in part (charge.dispute.resolve's refund_amount).
    sid = shipment(conn, "100.00")
    pay = event(sid, "payment.succeeded", "100.00")
    key = {"idempotency_key": pay["data"]["idempotency_key"]}
    assert process(conn, pay).outcome is Outcome.APPLIED
    opened = event(
        sid, "dispute.opened", "100.00", data={**key, "dispute": {"id": "dp_1", "amount": "100.00"}}
    )
    assert process(conn, opened).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("0.00"), Decimal("100.00"), "refunded")
    lost = event(sid, "dispute.lost", "100.00", data={**key, "dispute": {"id": "dp_1", "amount": "40.00"}})
    assert process(conn, lost).outcome is Outcome.APPLIED
    assert paid(conn, sid) == (Decimal("60.00"), Decimal("40.00"), "partial")
    assert process(conn, {**lost, "id": "evt_again"}).outcome is Outcome.IGNORED
    assert paid(conn, sid) == (Decimal("60.00"), Decimal("40.00"), "partial")
    assert payments.drift(conn) == []
