"""Processing one inbox event: the money moves here, once.

In one transaction: lock the event row, lock the shipment row (FOR UPDATE), find or create the
payment transaction by its idempotency key, apply the transition if it moves forward, and change
the shipment's amount_paid / amount_due / payment_status by the transition's delta. The guarded
transition (`WHERE transaction_status = <expected>`) under the shipment lock is what makes a
payment count once, whatever the number of deliveries, duplicates or workers.

Transitions are monotonic: pending -> processing -> completed | failed | cancelled; completed ->
refunded. A late or repeated event is recorded as `ignored`. A refund of a payment that has not
completed yet, and an event for a shipment not committed yet, wait (the job retries with backoff)
until `unmatched_after_s` has passed since the event arrived; then the event is `unmatched`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import psycopg
from psycopg.rows import dict_row

from db.states import FINAL_EVENT_STATUSES
from jobs.payments.events import EventError, parse_document

# The transaction status each event type moves a payment to.
TARGET_STATUS = {
    "payment.processing": "processing",
    "payment.succeeded": "completed",
    "payment.failed": "failed",
    "payment.refunded": "refunded",
}
# Order of payment_transactions.transaction_status; a transition only moves up.
_RANK = {"pending": 0, "processing": 1, "completed": 2, "failed": 2, "cancelled": 2, "refunded": 3}
# How long an event for an unknown shipment (or an early refund) waits when the caller says nothing.
DEFAULT_UNMATCHED_AFTER_S = 900.0


class Outcome(StrEnum):
    APPLIED = "applied"  # the transition was applied (and the money moved, if it moves money)
    IGNORED = "ignored"  # recorded, but late or repeated: nothing changed
    WAITING = "processing"  # not yet: try again later (the job retries)
    UNMATCHED = "unmatched"  # no shipment / no completed payment within the window: dead
    REJECTED = "rejected"  # refused (overpayment, currency, key reused): dead, shipment untouched
    DONE_BEFORE = "done_before"  # the event was already processed: nothing to do


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str | None = None


# -- payment_event_lock -- the event row, locked for the whole processing transaction.
PAYMENT_EVENT_LOCK = """
SELECT id, provider, event_id, status, payload::text AS payload,
       now() - greatest(received_at, replayed_at) > make_interval(secs => %(unmatched_after_s)s)
           AS window_passed
  FROM payment_events WHERE id = %(id)s
   FOR UPDATE
"""

# -- shipment_lock_for_payment -- money on a shipment moves only under this lock (primary key).
SHIPMENT_LOCK_FOR_PAYMENT = """
SELECT shipment_id, total_cost, amount_paid, currency, payment_status
  FROM shipments WHERE shipment_id = %(shipment_id)s
   FOR UPDATE
"""

# -- payment_transaction_lock -- the payment by its idempotency key
# (payment_transactions_idempotency_key_key).
PAYMENT_TRANSACTION_LOCK = """
SELECT transaction_id, shipment_id, amount, currency, transaction_type, transaction_status
  FROM payment_transactions WHERE idempotency_key = %(key)s
   FOR UPDATE
"""

# -- payment_transaction_insert -- the first event of a payment creates it.
PAYMENT_TRANSACTION_INSERT = """
INSERT INTO payment_transactions (shipment_id, idempotency_key, external_transaction_id, amount, currency,
                                  transaction_type, payment_method, transaction_status, gateway_provider,
                                  gateway_response, processed_at, failed_reason)
VALUES (%(shipment_id)s, %(key)s, %(external_id)s, %(amount)s, %(currency)s, 'payment', %(method)s,
        %(status)s::varchar, %(provider)s, %(response)s::jsonb,
        CASE WHEN %(status)s::varchar IN ('completed', 'failed') THEN LOCALTIMESTAMP END, %(failed_reason)s)
    ON CONFLICT (idempotency_key) DO NOTHING
RETURNING transaction_id
"""

# -- payment_transaction_transition -- guarded by the status it expects.
PAYMENT_TRANSACTION_TRANSITION = """
UPDATE payment_transactions
   SET transaction_status = %(status)s::varchar,
       external_transaction_id = coalesce(%(external_id)s, external_transaction_id),
       payment_method = coalesce(%(method)s, payment_method),
       gateway_provider = %(provider)s,
       gateway_response = %(response)s::jsonb,
       processed_at = CASE WHEN %(status)s::varchar IN ('completed', 'failed') THEN LOCALTIMESTAMP
                           ELSE processed_at END,
       failed_reason = coalesce(%(failed_reason)s, failed_reason),
       updated_at = LOCALTIMESTAMP
 WHERE transaction_id = %(transaction_id)s AND transaction_status = %(expected)s
"""

# -- shipment_apply_payment -- the delta, guarded by the amount it expects (we hold the lock).
SHIPMENT_APPLY_PAYMENT = """
UPDATE shipments
   SET amount_paid = amount_paid + %(delta)s,
       amount_due = CASE WHEN total_cost IS NULL THEN amount_due
                         ELSE total_cost - (amount_paid + %(delta)s) END,
       payment_status = %(payment_status)s,
       updated_at = LOCALTIMESTAMP
 WHERE shipment_id = %(shipment_id)s AND amount_paid = %(expected_paid)s
"""

# -- payment_event_finish -- the event's outcome (it is locked: no one else writes it now).
PAYMENT_EVENT_FINISH = """
UPDATE payment_events
   SET status = %(status)s::varchar, error = %(error)s, attempts = attempts + 1,
       processed_at = CASE WHEN %(status)s::varchar IN ('applied', 'ignored', 'unmatched', 'rejected')
                           THEN now() END
 WHERE id = %(id)s AND status IN ('received', 'processing')
"""


class ProcessingConflict(Exception):
    """Another transaction created the same payment at the same moment: try again."""


def process_event(
    conn: psycopg.Connection, event_pk: int, *, unmatched_after_s: float = DEFAULT_UNMATCHED_AFTER_S
) -> Result:
    """Process one inbox event in one transaction; returns what happened. Safe to call any
    number of times: an event already processed changes nothing."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            PAYMENT_EVENT_LOCK, {"id": event_pk, "unmatched_after_s": unmatched_after_s}
        ).fetchone()
        if row is None:
            return Result(Outcome.DONE_BEFORE, f"no payment event {event_pk}")
        if row["status"] in FINAL_EVENT_STATUSES:
            return Result(Outcome.DONE_BEFORE, f"already {row['status']}")
        result = _decide_and_apply(cur, row)
        if result.outcome is Outcome.WAITING and row["window_passed"]:
            result = Result(Outcome.UNMATCHED, f"{result.reason}; gave up after {unmatched_after_s:.0f}s")
        cur.execute(
            PAYMENT_EVENT_FINISH,
            {"id": event_pk, "status": str(result.outcome), "error": result.reason},
        )
        return result


def _decide_and_apply(cur: psycopg.Cursor, row: dict[str, Any]) -> Result:
    try:
        event = parse_document(json.loads(row["payload"], parse_float=Decimal))
    except (EventError, ValueError) as exc:  # stored before a contract change: refuse it visibly
        return Result(Outcome.REJECTED, f"invalid event: {exc}")
    ship = cur.execute(SHIPMENT_LOCK_FOR_PAYMENT, {"shipment_id": event.shipment_id}).fetchone()
    if ship is None:
        return Result(Outcome.WAITING, f"shipment {event.shipment_id} not found")
    if ship["currency"] is not None and ship["currency"] != event.currency:
        return Result(
            Outcome.REJECTED, f"currency {event.currency} differs from the shipment's ({ship['currency']})"
        )
    txn = cur.execute(PAYMENT_TRANSACTION_LOCK, {"key": event.idempotency_key}).fetchone()
    if txn is not None and (
        txn["shipment_id"] != event.shipment_id
        or txn["amount"] != event.amount
        or txn["transaction_type"] != "payment"
    ):
        return Result(
            Outcome.REJECTED,
            f"idempotency key {event.idempotency_key!r} belongs to another payment "
            f"({txn['transaction_id']}: {txn['amount']} {txn['currency']} on shipment {txn['shipment_id']})",
        )
    current = txn["transaction_status"] if txn is not None else None
    target = TARGET_STATUS[event.type]

    if target == "refunded":
        if current in (None, "pending", "processing"):
            return Result(
                Outcome.WAITING, f"refund before its payment completed (payment is {current or 'unknown'})"
            )
        if current in ("failed", "cancelled"):
            return Result(Outcome.REJECTED, f"refund of a payment that is {current}: nothing was paid")
        if current == "refunded":
            return Result(Outcome.IGNORED, "payment already refunded")
        delta = -event.amount
    else:
        if current is not None and (
            current in ("completed", "failed", "cancelled", "refunded") or _RANK[target] <= _RANK[current]
        ):
            return Result(Outcome.IGNORED, f"late or repeated {event.type}: the payment is already {current}")
        delta = event.amount if target == "completed" else Decimal(0)

    paid = ship["amount_paid"]
    total = ship["total_cost"]
    if delta > 0 and (total is None or paid + delta > total):
        return Result(
            Outcome.REJECTED,
            f"{event.amount} would bring shipment {event.shipment_id} to {paid + delta} paid "
            f"of a total of {total if total is not None else 'NULL (no total yet)'}",
        )

    params = {
        "key": event.idempotency_key,
        "shipment_id": event.shipment_id,
        "external_id": event.transaction_id,
        "amount": event.amount,
        "currency": event.currency,
        "method": event.payment_method,
        "status": target,
        "provider": row["provider"],
        "response": row["payload"],
        "failed_reason": event.failure_reason if target == "failed" else None,
    }
    if txn is None:
        if cur.execute(PAYMENT_TRANSACTION_INSERT, params).fetchone() is None:
            raise ProcessingConflict(f"payment {event.idempotency_key!r} was created concurrently")
    else:
        cur.execute(
            PAYMENT_TRANSACTION_TRANSITION,
            {**params, "transaction_id": txn["transaction_id"], "expected": current},
        )
        if cur.rowcount != 1:
            raise ProcessingConflict(f"payment {event.idempotency_key!r} changed concurrently")

    new_status = _payment_status(ship["payment_status"], paid + delta, total, target)
    if delta != 0 or new_status != ship["payment_status"]:
        cur.execute(
            SHIPMENT_APPLY_PAYMENT,
            {
                "delta": delta,
                "payment_status": new_status,
                "shipment_id": event.shipment_id,
                "expected_paid": paid,
            },
        )
        if cur.rowcount != 1:
            raise ProcessingConflict(f"shipment {event.shipment_id} changed under its lock")
    return Result(Outcome.APPLIED, None)


def _payment_status(current: str | None, paid: Decimal, total: Decimal | None, target: str) -> str:
    """The shipment's payment_status after a transition (unpaid / partial / paid / refunded / failed)."""
    if total is not None and total > 0 and paid >= total:
        return "paid"
    if paid > 0:
        return "partial"
    if target == "refunded":
        return "refunded"
    if target == "failed" and current in (None, "unpaid", "pending", "failed"):
        return "failed"
    if current in ("paid", "partial"):
        return "unpaid"
    return current or "unpaid"
