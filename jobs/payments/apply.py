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
from jobs.payments.events import EventError, PaymentEvent, parse_document

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
# Transactions one event gets when its guarded writes keep finding the payment changed meanwhile.
CONFLICT_ATTEMPTS = 3


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


# -- payment_event_lock -- the event, its shipment and its payment, locked in that order for the whole
# processing transaction, in one statement: the shipment (primary key) only while the event is open, the
# payment (payment_transactions_idempotency_key_key) only when the shipment exists. Money on a shipment
# moves only under its lock. It also bounds how long the transaction may sit idle with those locks
# (LOCK_IDLE_TIMEOUT).
PAYMENT_EVENT_LOCK = """
WITH event AS MATERIALIZED (
    SELECT id, provider, status, payload::text AS payload, shipment_id, idempotency_key,
           now() - greatest(received_at, replayed_at) > make_interval(secs => %(unmatched_after_s)s)
               AS window_passed
      FROM payment_events WHERE id = %(id)s
       FOR UPDATE),
ship AS MATERIALIZED (
    SELECT shipment_id, total_cost, amount_paid, currency, payment_status
      FROM shipments
     WHERE shipment_id = (SELECT shipment_id FROM event WHERE status IN ('received', 'processing'))
       FOR UPDATE),
txn AS MATERIALIZED (
    SELECT transaction_id, shipment_id, amount, currency, transaction_type, transaction_status
      FROM payment_transactions
     WHERE idempotency_key = (SELECT idempotency_key FROM event WHERE EXISTS (SELECT FROM ship))
       FOR UPDATE)
SELECT event.*,
       ship.shipment_id IS NOT NULL AS ship_found, ship.total_cost AS ship_total_cost,
       ship.amount_paid AS ship_amount_paid, ship.currency AS ship_currency,
       ship.payment_status AS ship_payment_status,
       txn.transaction_id AS txn_transaction_id, txn.shipment_id AS txn_shipment_id, txn.amount AS txn_amount,
       txn.currency AS txn_currency, txn.transaction_type AS txn_transaction_type,
       txn.transaction_status AS txn_transaction_status,
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true) AS idle_timeout
  FROM event LEFT JOIN ship ON true LEFT JOIN txn ON true
"""

# A processing transaction idle this long is ended by the server, its locks released: its worker
# was cut off from PostgreSQL between two statements (a network partition, a frozen host), and the
# other workers waiting on the shipment's lock must not wait for the partition to heal. The
# transaction's statements follow each other within milliseconds; the job retries if it is cut.
LOCK_IDLE_TIMEOUT = "5s"

# PRIMARY_KEY_ONLY: the writes below find their row by its primary key, and their status guards
# are written `(...) IS TRUE`, which no index can serve. Written plainly, the planner may serve a
# guard from `payment_events_open_idx` (open events) or `idx_payments_status` instead, and does so
# whenever the statistics say few events are open or few payments are in that status: the usual
# state of a healthy system. Once a backlog builds (workers down for a while, a burst), every
# write then walks all open events: measured 4.2 ms of PostgreSQL per event and 310 events/s
# draining 11,000 stored events, against 1.05 ms and 766/s with the same statistics and the guards
# written so (docs/benchmarks.md, payments).

# -- payment_event_apply -- an applied event's writes in one statement: the payment (created when
# `transaction_id` is NULL, else moved from the status it is `expected` to have), the shipment's
# amounts (when `move_shipment`; guarded by the amount it is expected to have: we hold its lock), and
# the event's outcome. Returns the rows the payment and the shipment parts changed: anything but one
# each (the shipment: when moved) is a conflict, and the caller rolls the transaction back.
PAYMENT_EVENT_APPLY = """
WITH created AS (
    INSERT INTO payment_transactions (shipment_id, idempotency_key, external_transaction_id, amount, currency,
                                      transaction_type, payment_method, transaction_status, gateway_provider,
                                      gateway_response, processed_at, failed_reason)
    SELECT %(shipment_id)s, %(key)s, %(external_id)s, %(amount)s, %(currency)s, 'payment', %(method)s,
           %(status)s::varchar, %(provider)s, %(response)s::jsonb,
           CASE WHEN %(status)s::varchar IN ('completed', 'failed') THEN LOCALTIMESTAMP END, %(failed_reason)s
     WHERE %(transaction_id)s::uuid IS NULL
        ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING 1),
moved AS (
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
     WHERE transaction_id = %(transaction_id)s::uuid AND (transaction_status = %(expected)s) IS TRUE
    RETURNING 1),
shipment AS (
    UPDATE shipments
       SET amount_paid = amount_paid + %(delta)s,
           amount_due = CASE WHEN total_cost IS NULL THEN amount_due
                             ELSE total_cost - (amount_paid + %(delta)s) END,
           payment_status = %(payment_status)s,
           updated_at = LOCALTIMESTAMP
     WHERE %(move_shipment)s AND shipment_id = %(shipment_id)s AND amount_paid = %(expected_paid)s
    RETURNING 1),
finished AS (
    UPDATE payment_events
       SET status = 'applied', error = NULL, attempts = attempts + 1, processed_at = now()
     WHERE id = %(id)s AND (status IN ('received', 'processing')) IS TRUE
    RETURNING 1)
SELECT (SELECT count(*) FROM created) + (SELECT count(*) FROM moved) AS payment_rows,
       (SELECT count(*) FROM shipment) AS shipment_rows
"""

# -- payment_event_finish -- the outcome of an event that changes no money (it is locked: no one
# else writes it now). The guard as in PRIMARY_KEY_ONLY.
PAYMENT_EVENT_FINISH = """
UPDATE payment_events
   SET status = %(status)s::varchar, error = %(error)s, attempts = attempts + 1,
       processed_at = CASE WHEN %(status)s::varchar IN ('applied', 'ignored', 'unmatched', 'rejected')
                           THEN now() END
 WHERE id = %(id)s AND (status IN ('received', 'processing')) IS TRUE
"""


class ProcessingConflict(Exception):
    """Another transaction created the same payment at the same moment: try again."""


def process_event(
    conn: psycopg.Connection, event_pk: int, *, unmatched_after_s: float = DEFAULT_UNMATCHED_AFTER_S
) -> Result:
    """Process one inbox event in one transaction; returns what happened. Safe to call any
    number of times: an event already processed changes nothing.

    Two statements between BEGIN and COMMIT: the locks (PAYMENT_EVENT_LOCK), then the writes
    (PAYMENT_EVENT_APPLY, or only the outcome: PAYMENT_EVENT_FINISH). The locks' statement reads
    the payment with the snapshot it started with: a payment another transaction created while
    this one waited for the shipment's lock is not seen, the guarded writes then change nothing,
    and the event starts over in a new transaction (which sees it)."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return _process_once(conn, event_pk, unmatched_after_s)
        except ProcessingConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _process_once(conn: psycopg.Connection, event_pk: int, unmatched_after_s: float) -> Result:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            PAYMENT_EVENT_LOCK,
            {"id": event_pk, "unmatched_after_s": unmatched_after_s, "idle_timeout": LOCK_IDLE_TIMEOUT},
        ).fetchone()
        if row is None:
            return Result(Outcome.DONE_BEFORE, f"no payment event {event_pk}")
        if row["status"] in FINAL_EVENT_STATUSES:
            return Result(Outcome.DONE_BEFORE, f"already {row['status']}")
        result, writes = _decide(row)
        if writes is not None:
            payment_rows, shipment_rows = (
                cur.execute(PAYMENT_EVENT_APPLY, {**writes, "id": event_pk}).fetchone().values()
            )
            if payment_rows != 1:
                raise ProcessingConflict(f"payment {writes['key']!r} was created or changed concurrently")
            if shipment_rows != (1 if writes["move_shipment"] else 0):
                raise ProcessingConflict(f"shipment {writes['shipment_id']} changed under its lock")
            return result
        if result.outcome is Outcome.WAITING and row["window_passed"]:
            result = Result(Outcome.UNMATCHED, f"{result.reason}; gave up after {unmatched_after_s:.0f}s")
        cur.execute(
            PAYMENT_EVENT_FINISH, {"id": event_pk, "status": str(result.outcome), "error": result.reason}
        )
        return result


def _decide(row: dict[str, Any]) -> tuple[Result, dict[str, Any] | None]:
    """The outcome of an open event given its locked shipment and payment (PAYMENT_EVENT_LOCK's
    row), and the parameters of PAYMENT_EVENT_APPLY when it applies. No SQL here."""
    ship = _prefixed(row, "ship_") if row["ship_found"] else None
    txn = _prefixed(row, "txn_") if row["txn_transaction_id"] is not None else None
    try:
        event = parse_document(json.loads(row["payload"], parse_float=Decimal))
    except (EventError, ValueError) as exc:  # stored before a contract change: refuse it visibly
        return Result(Outcome.REJECTED, f"invalid event: {exc}"), None
    refused = _unmatched_or_refused(row, event, ship, txn)
    if refused is not None:
        return refused, None
    current = txn["transaction_status"] if txn is not None else None
    target = TARGET_STATUS[event.type]
    # The money the transition moves, or why it does not apply.
    delta = _refund_delta(event, current) if target == "refunded" else _forward_delta(event, current, target)
    if isinstance(delta, Result):
        return delta, None
    overpaid = _overpayment(event, ship, delta)
    if overpaid is not None:
        return overpaid, None
    return Result(Outcome.APPLIED, None), _writes(row, event, ship, txn, target, delta)


def _unmatched_or_refused(
    row: dict[str, Any], event: PaymentEvent, ship: dict[str, Any] | None, txn: dict[str, Any] | None
) -> Result | None:
    """Why the event cannot apply to this shipment and payment at all (None: it can): a payload that
    differs from its row, a shipment not there (yet), another currency, a key of another payment."""
    if event.shipment_id != row["shipment_id"] or event.idempotency_key != row["idempotency_key"]:
        return Result(Outcome.REJECTED, "the payload's shipment or idempotency key differs from the row's")
    if ship is None:
        return Result(Outcome.WAITING, f"shipment {event.shipment_id} not found")
    if ship["currency"] is not None and ship["currency"] != event.currency:
        reason = f"currency {event.currency} differs from the shipment's ({ship['currency']})"
        return Result(Outcome.REJECTED, reason)
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
    return None


def _refund_delta(event: PaymentEvent, current: str | None) -> Result | Decimal:
    """A refund of the payment in status `current`: the money it moves, or why it does not apply."""
    if current in (None, "pending", "processing"):
        reason = f"refund before its payment completed (payment is {current or 'unknown'})"
        return Result(Outcome.WAITING, reason)
    if current in ("failed", "cancelled"):
        return Result(Outcome.REJECTED, f"refund of a payment that is {current}: nothing was paid")
    if current == "refunded":
        return Result(Outcome.IGNORED, "payment already refunded")
    return -event.amount


def _forward_delta(event: PaymentEvent, current: str | None, target: str) -> Result | Decimal:
    """A payment moving forward to `target` (processing, completed, failed) from status `current`:
    the money it moves, or why it does not apply (late or repeated)."""
    if current is not None and (
        current in ("completed", "failed", "cancelled", "refunded") or _RANK[target] <= _RANK[current]
    ):
        reason = f"late or repeated {event.type}: the payment is already {current}"
        return Result(Outcome.IGNORED, reason)
    return event.amount if target == "completed" else Decimal(0)


def _overpayment(event: PaymentEvent, ship: dict[str, Any], delta: Decimal) -> Result | None:
    """The refusal of a payment that would bring the shipment beyond its total (None: it does not)."""
    paid = ship["amount_paid"]
    total = ship["total_cost"]
    if delta > 0 and (total is None or paid + delta > total):
        return Result(
            Outcome.REJECTED,
            f"{event.amount} would bring shipment {event.shipment_id} to {paid + delta} paid "
            f"of a total of {total if total is not None else 'NULL (no total yet)'}",
        )
    return None


def _writes(
    row: dict[str, Any],
    event: PaymentEvent,
    ship: dict[str, Any],
    txn: dict[str, Any] | None,
    target: str,
    delta: Decimal,
) -> dict[str, Any]:
    """The parameters of PAYMENT_EVENT_APPLY for an event that applies."""
    paid = ship["amount_paid"]
    new_status = _payment_status(ship["payment_status"], paid + delta, ship["total_cost"], target)
    return {
        "transaction_id": txn["transaction_id"] if txn is not None else None,
        "expected": txn["transaction_status"] if txn is not None else None,
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
        "move_shipment": delta != 0 or new_status != ship["payment_status"],
        "delta": delta,
        "payment_status": new_status,
        "expected_paid": paid,
    }


def _prefixed(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {key[len(prefix) :]: value for key, value in row.items() if key.startswith(prefix)}


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
