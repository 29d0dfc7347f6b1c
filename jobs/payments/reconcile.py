"""Reconciliation: events whose job was lost go out again; shipments whose amount_paid drifted
from their payments are reported (log, Sentry, and `drift(conn)` for the dashboard)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg
import sentry_sdk
from psycopg.rows import dict_row

import config
from jobs.payments.inbox import DRAIN_ACTOR, processing_jobs
from workers import JobSpec, enqueue_many

logger = logging.getLogger("skyport.payments")

# An open event younger than this is left alone (its job is probably just queued).
DEFAULT_STUCK_AFTER_S = 60.0
# Events re-enqueued per reconciliation run.
DEFAULT_REQUEUE_LIMIT = 5000
# The dedup key of reconciliation's drain (one at a time).
RECONCILE_DRAIN_KEY = "payments-drain:reconcile"
# Drifting shipments listed per report.
DEFAULT_DRIFT_LIMIT = 100

# -- payment_event_stuck -- open events overdue for a while (payment_events_due_idx); with one job
# per event, only those whose key no unfinished job holds (jobs_dedup_lock_key): their job was lost,
# went dead, or was cancelled.
PAYMENT_EVENT_STUCK = """
SELECT e.id, e.provider, e.event_id
  FROM payment_events e
 WHERE e.status IN ('received', 'processing')
   AND e.next_attempt_at < now() - make_interval(secs => %(older_than_s)s)
   AND (%(batch)s OR NOT EXISTS (SELECT 1 FROM jobs j
                                  WHERE j.dedup_lock = 'payment-event:' || e.provider || ':' || e.event_id
                                    AND j.finished_at IS NULL))
 ORDER BY e.next_attempt_at
 LIMIT %(limit)s
"""


def requeue_stuck(
    conn: psycopg.Connection,
    older_than_s: float = DEFAULT_STUCK_AFTER_S,
    limit: int = DEFAULT_REQUEUE_LIMIT,
) -> list[int]:
    """Enqueue again the processing of events overdue in received/processing (one drain, or with one
    job per event, a job for each that has none); returns their ids."""
    batch = config.get().payments.processing == "batch"
    params = {"older_than_s": older_than_s, "limit": limit, "batch": batch}
    with conn.transaction():
        rows = conn.execute(PAYMENT_EVENT_STUCK, params).fetchall()
        jobs = (
            [JobSpec(DRAIN_ACTOR, dedup_key=RECONCILE_DRAIN_KEY)] if batch and rows else processing_jobs(rows)
        )
        refs = enqueue_many(jobs, conn=conn, enqueued_by="payments:reconcile")
    if batch:
        return [pk for pk, _, _ in rows] if refs and refs[0].created else []
    return [pk for (pk, _, _), ref in zip(rows, refs, strict=True) if ref.created]


# -- shipment_payment_drift -- amount_paid against its payments: completed (and later refunded)
# payments and completed adjustments add, completed refunds subtract, and so do the chargebacks of
# open (processing) or lost (completed) disputes (idx_payments_shipment).
SHIPMENT_PAYMENT_DRIFT = """
WITH ledger AS (
    SELECT shipment_id,
           sum(CASE
                 WHEN transaction_type = 'payment' AND transaction_status IN ('completed', 'refunded')
                      THEN amount
                 WHEN transaction_type = 'adjustment' AND transaction_status = 'completed' THEN amount
                 WHEN transaction_type = 'refund' AND transaction_status = 'completed' THEN -amount
                 WHEN transaction_type = 'chargeback' AND transaction_status IN ('processing', 'completed')
                      THEN -amount
                 ELSE 0 END) AS expected
      FROM payment_transactions
     GROUP BY shipment_id)
SELECT s.shipment_id, s.tracking_number, s.amount_paid, coalesce(l.expected, 0) AS expected,
       s.amount_paid - coalesce(l.expected, 0) AS drift, s.payment_status, s.total_cost
  FROM shipments s
  LEFT JOIN ledger l ON l.shipment_id = s.shipment_id
 WHERE s.amount_paid <> coalesce(l.expected, 0)
 ORDER BY abs(s.amount_paid - coalesce(l.expected, 0)) DESC
 LIMIT %(limit)s
"""


def drift(conn: psycopg.Connection, limit: int = DEFAULT_DRIFT_LIMIT) -> list[dict[str, Any]]:
    """Shipments whose amount_paid differs from their payments minus refunds and chargebacks."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(SHIPMENT_PAYMENT_DRIFT, {"limit": limit}).fetchall()


@dataclass(frozen=True)
class Reconciliation:
    requeued: list[int]
    drifting: list[dict[str, Any]]


def reconcile(conn: psycopg.Connection, stuck_after_s: float = DEFAULT_STUCK_AFTER_S) -> Reconciliation:
    """One pass: re-enqueue stuck events, report drifting shipments (log + Sentry)."""
    requeued = requeue_stuck(conn, stuck_after_s)
    if requeued:
        logger.warning("payments: re-enqueued %d stuck event(s): %s", len(requeued), requeued[:20])
    drifting = drift(conn)
    for row in drifting:
        logger.error(
            "payments: shipment %s (%s) has amount_paid %s but its payments sum to %s",
            row["shipment_id"],
            row["tracking_number"],
            row["amount_paid"],
            row["expected"],
        )
    if drifting:
        sentry_sdk.capture_message(
            f"payments: {len(drifting)} shipment(s) whose amount_paid drifted from their payments",
            level="error",
        )
    return Reconciliation(requeued, drifting)
