"""Processing the inbox in batches: claim, lock, apply (jobs/payments/apply.py), write; one transaction.

A batch claims the due events at the head of the inbox (`FOR UPDATE SKIP LOCKED`), then their
shipments (`FOR UPDATE SKIP LOCKED`: a shipment another worker holds is left to it), then the open
events of those shipments in their order (`SKIP LOCKED`: a shipment's events are applied in order up
to the first one another transaction holds; the rest wait for the next batch), then the shipments'
payment rows. Every event is decided in memory; the writes are one statement each for the payment
rows, the shipments and the events' outcomes. Different shipments go in parallel across workers and
hosts; one shipment's money moves under its row lock only.

An event whose processing raises is retried on its own with backoff and ends `dead` after
MAX_ATTEMPTS; when a batch's writes fail, its events are processed again one by one, each in a
transaction of its own (`process_event`, also the one-job-per-event path), so that only the event
at fault fails.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from jobs.payments.apply import Ledger, Outcome, Result, Txn, apply_event
from jobs.payments.body import EventError
from jobs.payments.events import parse_document

logger = logging.getLogger("skyport.payments")

# How long an event for an unknown shipment (or an early refund) waits when the caller says nothing.
DEFAULT_UNMATCHED_AFTER_S = 900.0
# Events claimed at the head of the inbox per batch.
DEFAULT_BATCH = 500
# Attempts of an event whose processing raises before it ends dead, and its backoff's ceiling.
MAX_ATTEMPTS = 5
MAX_BACKOFF_S = 30.0
# A batch transaction left idle this long is ended by the server, its locks released (its worker was
# cut off from PostgreSQL between two statements); the statements follow each other within ms.
LOCK_IDLE_TIMEOUT = "5s"
_OPEN = ("received", "processing")

# -- payment_event_resolve -- open events that name only their payment (a refund, a dispute) get the
# payment's shipment once it is known (payment_events_orphan_idx; payment_transactions' unique key).
PAYMENT_EVENT_RESOLVE = """
WITH orphan AS MATERIALIZED (
    SELECT e.id, t.shipment_id
      FROM payment_events e
      JOIN payment_transactions t ON t.idempotency_key = e.idempotency_key AND t.transaction_type = 'payment'
     WHERE e.shipment_id IS NULL AND e.status IN ('received', 'processing')
       FOR UPDATE OF e SKIP LOCKED)
UPDATE payment_events e
   SET shipment_id = orphan.shipment_id, next_attempt_at = now()
  FROM orphan
 WHERE e.id = orphan.id
"""

# -- payment_batch_claim -- the due events at the head of the inbox (payment_events_due_idx), and the
# shipments of those no one else holds; `found` tells a shipment held elsewhere from a missing one.
PAYMENT_BATCH_CLAIM = """
WITH due AS MATERIALIZED (
    SELECT id, shipment_id, idempotency_key, attempts,
           now() - greatest(received_at, replayed_at) > make_interval(secs => %(unmatched_after_s)s)
               AS window_passed
      FROM payment_events
     WHERE status IN ('received', 'processing') AND next_attempt_at <= now()
     ORDER BY next_attempt_at
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED),
ship AS MATERIALIZED (
    SELECT s.shipment_id, s.total_cost, s.amount_paid, s.currency, s.payment_status
      FROM shipments s
     WHERE s.shipment_id IN (SELECT shipment_id FROM due)
       FOR UPDATE OF s SKIP LOCKED)
SELECT due.id, due.shipment_id, due.idempotency_key, due.attempts, due.window_passed,
       ship.shipment_id IS NOT NULL AS claimed, ship.total_cost, ship.amount_paid, ship.currency,
       ship.payment_status,
       ship.shipment_id IS NOT NULL
           OR EXISTS (SELECT FROM shipments x WHERE x.shipment_id = due.shipment_id) AS found,
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true) AS idle_timeout
  FROM due LEFT JOIN ship ON ship.shipment_id = due.shipment_id
"""

# -- payment_shipment_events -- the open events of the claimed shipments, in order
# (payment_events_shipment_open_idx); `mine`: locked by this transaction (else another holds it).
PAYMENT_SHIPMENT_EVENTS = """
WITH mine AS MATERIALIZED (
    SELECT id FROM payment_events
     WHERE shipment_id = ANY(%(ships)s) AND status IN ('received', 'processing')
       FOR UPDATE SKIP LOCKED)
SELECT e.id, e.provider, e.shipment_id, e.idempotency_key, e.attempts,
       coalesce(e.normalized, e.payload)::text AS normalized,
       e.payload::text AS payload, e.id IN (SELECT id FROM mine) AS mine,
       now() - greatest(e.received_at, e.replayed_at) > make_interval(secs => %(unmatched_after_s)s)
           AS window_passed
  FROM payment_events e
 WHERE e.shipment_id = ANY(%(ships)s) AND e.status IN ('received', 'processing')
 ORDER BY e.shipment_id, e.id
"""

# -- payment_transaction_lock -- the claimed shipments' payment rows, and the rows of the events'
# keys wherever they are (idx_payments_shipment, payment_transactions_idempotency_key_key).
PAYMENT_TRANSACTION_LOCK = """
SELECT transaction_id, shipment_id, idempotency_key, amount, currency, transaction_type,
       transaction_status, external_transaction_id, payment_method, failed_reason
  FROM payment_transactions
 WHERE shipment_id = ANY(%(ships)s) OR idempotency_key = ANY(%(keys)s)
   FOR UPDATE
"""

# -- payment_transaction_upsert -- the batch's new and changed payment rows (an amount changes only for
# a dispute lost for less than was disputed); a row of the same key on another shipment (created
# meanwhile) is left alone, and the missing count rolls the batch back.
PAYMENT_TRANSACTION_UPSERT = """
INSERT INTO payment_transactions AS t (
    shipment_id, idempotency_key, external_transaction_id, amount, currency, transaction_type,
    payment_method, transaction_status, gateway_provider, gateway_response, processed_at, failed_reason)
SELECT u.shipment_id, u.key, u.external_id, u.amount, u.currency, u.kind, u.method, u.status, u.provider,
       u.response::jsonb,
       CASE WHEN u.status IN ('completed', 'failed', 'refunded', 'cancelled') THEN LOCALTIMESTAMP END,
       u.failed_reason
  FROM unnest(%(shipment_id)s::uuid[], %(key)s::varchar[], %(external_id)s::varchar[], %(amount)s::numeric[],
              %(currency)s::varchar[], %(kind)s::varchar[], %(method)s::varchar[], %(status)s::varchar[],
              %(provider)s::varchar[], %(response)s::text[], %(failed_reason)s::text[])
       AS u(shipment_id, key, external_id, amount, currency, kind, method, status, provider, response,
            failed_reason)
    ON CONFLICT (idempotency_key) DO UPDATE
   SET transaction_status = EXCLUDED.transaction_status,
       amount = EXCLUDED.amount,
       external_transaction_id = coalesce(EXCLUDED.external_transaction_id, t.external_transaction_id),
       payment_method = coalesce(EXCLUDED.payment_method, t.payment_method),
       gateway_provider = coalesce(EXCLUDED.gateway_provider, t.gateway_provider),
       gateway_response = coalesce(EXCLUDED.gateway_response, t.gateway_response),
       processed_at = coalesce(EXCLUDED.processed_at, t.processed_at),
       failed_reason = coalesce(EXCLUDED.failed_reason, t.failed_reason),
       updated_at = LOCALTIMESTAMP
 WHERE t.shipment_id = EXCLUDED.shipment_id AND t.transaction_type = EXCLUDED.transaction_type
RETURNING 1
"""

# -- payment_shipment_move -- the shipments' new amounts, guarded by the amount each is expected to
# have (its lock is held: a mismatch is a bug, and rolls the batch back).
PAYMENT_SHIPMENT_MOVE = """
UPDATE shipments AS s
   SET amount_paid = u.paid,
       amount_due = CASE WHEN s.total_cost IS NULL THEN s.amount_due ELSE s.total_cost - u.paid END,
       payment_status = u.status,
       updated_at = LOCALTIMESTAMP
  FROM unnest(%(id)s::uuid[], %(paid)s::numeric[], %(status)s::varchar[], %(expected)s::numeric[])
       AS u(id, paid, status, expected)
 WHERE s.shipment_id = u.id AND s.amount_paid = u.expected
"""

# -- payment_event_outcomes -- each event's outcome; open ones come due again after `delay_s`. The
# guard is written `(...) IS TRUE` so that the planner finds each row by its primary key rather than
# through a partial index on the open events (which a backlog makes slow).
PAYMENT_EVENT_OUTCOMES = """
UPDATE payment_events AS e
   SET status = u.status, error = u.error, attempts = e.attempts + 1,
       processed_at = CASE WHEN u.status IN ('applied', 'ignored', 'unmatched', 'rejected', 'dead')
                           THEN now() END,
       next_attempt_at = now() + make_interval(secs => u.delay_s)
  FROM unnest(%(id)s::bigint[], %(status)s::varchar[], %(error)s::text[], %(delay_s)s::float8[])
       AS u(id, status, error, delay_s)
 WHERE e.id = u.id AND (e.status IN ('received', 'processing')) IS TRUE
"""


class BatchConflict(Exception):
    """The batch's writes did not change the rows its locks promised: roll back, try again."""


@dataclass
class Outcomes:
    """What a batch decided: by event id, its result and the row's new status, error and delay."""

    results: dict[int, Result] = field(default_factory=dict)
    rows: list[tuple[int, str, str | None, float]] = field(default_factory=list)

    def add(self, row: dict[str, Any], result: Result, unmatched_after_s: float) -> None:
        status, error, delay = _event_status(row, result, unmatched_after_s)
        self.results[row["id"]] = (
            Result(Outcome(status), error) if status in ("unmatched", "dead") else result
        )
        self.rows.append((row["id"], status, error, delay))


def _backoff_s(attempts: int) -> float:
    return min(MAX_BACKOFF_S, float(2 ** min(attempts, 10)))


def _event_status(
    row: dict[str, Any], result: Result, unmatched_after_s: float
) -> tuple[str, str | None, float]:
    """The event row's new status, error and seconds until it is due again."""
    if result.outcome is Outcome.WAITING:
        if row["window_passed"]:
            return "unmatched", f"{result.reason}; gave up after {unmatched_after_s:.0f}s", 0.0
        return "processing", result.reason, _backoff_s(row["attempts"])
    if result.outcome is Outcome.FAILED:
        if row["attempts"] + 1 >= MAX_ATTEMPTS:
            return "dead", f"{result.reason} (after {MAX_ATTEMPTS} attempts)", 0.0
        return "processing", result.reason, _backoff_s(row["attempts"])
    return str(result.outcome), result.reason, 0.0


def decide(ledger: Ledger, row: dict[str, Any]) -> Result:
    """One event applied to its locked shipment (in memory); a raising event is FAILED, alone."""
    try:
        event = parse_document(json.loads(row["normalized"], parse_float=Decimal))
    except (EventError, ValueError, TypeError) as exc:  # stored before a contract change
        return Result(Outcome.REJECTED, f"invalid event: {exc}")
    if event.shipment_id is not None and event.shipment_id != ledger.shipment_id:
        return Result(Outcome.REJECTED, "the event's shipment differs from its payment's")
    try:
        return apply_event(ledger, event, row["provider"], row["payload"])
    except Exception as exc:
        logger.exception("payment event %s failed", row["id"])
        return Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:1000])


def load_ledgers(
    cur: psycopg.Cursor[dict[str, Any]], ships: list[dict[str, Any]], events: list[dict[str, Any]]
) -> dict[uuid.UUID, Ledger]:
    """The claimed shipments with their payment rows (locked) and the rows of their events' keys."""
    by_key: dict[str, Txn] = {}
    ledgers = {
        s["shipment_id"]: Ledger(
            s["shipment_id"], s["total_cost"], s["amount_paid"], s["currency"], s["payment_status"],
            paid_before=s["amount_paid"], status_before=s["payment_status"], by_key=by_key,
        )
        for s in ships
    }  # fmt: skip
    keys = sorted({e["idempotency_key"] for e in events if e["idempotency_key"]})
    params = {"ships": list(ledgers), "keys": keys}
    for t in cur.execute(PAYMENT_TRANSACTION_LOCK, params).fetchall():
        row = Txn(
            t["idempotency_key"], t["shipment_id"], t["amount"], t["currency"], t["transaction_type"],
            t["transaction_status"], t["transaction_id"], t["external_transaction_id"], t["payment_method"],
            failed_reason=t["failed_reason"],
        )  # fmt: skip
        by_key[row.key] = row
        own = ledgers.get(t["shipment_id"])
        if own is not None:
            own.rows[row.key] = row
    return ledgers


def apply_in_order(
    ledgers: dict[uuid.UUID, Ledger], events: list[dict[str, Any]], unmatched_after_s: float
) -> Outcomes:
    """Each shipment's events in order, up to the first one this transaction does not hold; an event
    that waited is tried once more after the shipment's others applied (a refund seen before its
    payment, in the same batch)."""
    outcomes = Outcomes()
    by_ship: dict[uuid.UUID, list[dict[str, Any]]] = {}
    for row in events:
        by_ship.setdefault(row["shipment_id"], []).append(row)
    for ship, rows in by_ship.items():
        ledger = ledgers[ship]
        held = list(_until_gap(rows))
        results = {r["id"]: decide(ledger, r) for r in held}
        waiting = [r for r in held if results[r["id"]].outcome is Outcome.WAITING]
        if waiting and len(waiting) < len(held):
            for row in waiting:
                results[row["id"]] = decide(ledger, row)
        for row in held:
            outcomes.add(row, results[row["id"]], unmatched_after_s)
    return outcomes


def _until_gap(rows: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for row in rows:
        if not row["mine"]:
            return
        yield row


def write(cur: psycopg.Cursor[Any], ledgers: Iterable[Ledger], outcomes: Outcomes) -> None:
    """The batch's writes: payment rows, shipments, event outcomes (one statement each)."""
    ledgers = list(ledgers)
    txns = [ledger.rows[key] for ledger in ledgers for key in sorted(ledger.changed)]
    if txns:
        columns: dict[str, list[Any]] = {
            "shipment_id": [t.shipment_id for t in txns], "key": [t.key for t in txns],
            "external_id": [t.external_id for t in txns], "amount": [t.amount for t in txns],
            "currency": [t.currency for t in txns], "kind": [t.type for t in txns],
            "method": [t.method for t in txns], "status": [t.status for t in txns],
            "provider": [t.provider for t in txns], "response": [t.response for t in txns],
            "failed_reason": [t.failed_reason for t in txns],
        }  # fmt: skip
        if len(cur.execute(PAYMENT_TRANSACTION_UPSERT, columns).fetchall()) != len(txns):
            raise BatchConflict("a payment row was created on another shipment meanwhile")
    moved = [lg for lg in ledgers if lg.moved]
    if moved:
        cur.execute(
            PAYMENT_SHIPMENT_MOVE,
            {
                "id": [lg.shipment_id for lg in moved], "paid": [lg.amount_paid for lg in moved],
                "status": [lg.payment_status for lg in moved], "expected": [lg.paid_before for lg in moved],
            },
        )  # fmt: skip
        if cur.rowcount != len(moved):
            raise BatchConflict("a shipment's amount changed under its lock")
    if outcomes.rows:
        ids, statuses, errors, delays = (list(c) for c in zip(*outcomes.rows, strict=True))
        cur.execute(
            PAYMENT_EVENT_OUTCOMES, {"id": ids, "status": statuses, "error": errors, "delay_s": delays}
        )
