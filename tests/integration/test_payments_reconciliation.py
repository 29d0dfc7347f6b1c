"""Payment webhooks against the real database, reconciliation: stuck events requeued, drift between
the shipments and their payments reported."""

from __future__ import annotations

from decimal import Decimal

from jobs import payments
from jobs.payments.apply import Outcome
from tests.integration.payments_support import event, receive, shipment


def test_reconcile_requeues_stuck_events_and_reports_drift(conn):
    sid = shipment(conn, "100.00")
    pk = receive(conn, event(sid, "payment.succeeded", "40.00"))
    # The job is lost (cancelled by mistake); the event is old.
    conn.execute("UPDATE jobs SET state = 'cancelled', finished_at = now(), dedup_lock = NULL")
    conn.execute("UPDATE payment_events SET next_attempt_at = now() - interval '10 minutes'")
    result = payments.reconcile(conn, stuck_after_s=60)
    assert result.requeued == [pk]
    assert conn.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0] == 1
    assert (
        conn.execute("SELECT actor FROM jobs WHERE state = 'queued'").fetchone()[0] == "drain_payment_events"
    )
    assert payments.reconcile(conn, stuck_after_s=60).requeued == []  # its drain, queued, holds the key
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
