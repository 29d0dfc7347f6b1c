"""Working through the inbox: batches until nothing is due (`drain`), and one event on its own
(`process_event`: the one-job-per-event path, and a failed batch's events one by one).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from jobs.payments.apply import Outcome, Result
from jobs.payments.batch import (
    DEFAULT_BATCH,
    DEFAULT_UNMATCHED_AFTER_S,
    LOCK_IDLE_TIMEOUT,
    PAYMENT_BATCH_CLAIM,
    PAYMENT_EVENT_RESOLVE,
    PAYMENT_SHIPMENT_EVENTS,
    BatchConflict,
    Outcomes,
    apply_in_order,
    decide,
    load_ledgers,
    write,
)

logger = logging.getLogger("skyport.payments")

# Transactions one event gets when its writes keep finding its payment created meanwhile elsewhere.
CONFLICT_ATTEMPTS = 3
# A drain stops after this long (its job ends; the next trigger carries on).
DEFAULT_DRAIN_BUDGET_S = 10.0

# -- payment_event_lock -- one event (primary key), with the idle bound of the batch transaction.
PAYMENT_EVENT_LOCK = """
SELECT id, provider, status, shipment_id, idempotency_key, attempts,
       coalesce(normalized, payload)::text AS normalized,
       payload::text AS payload, true AS mine,
       now() - greatest(received_at, replayed_at) > make_interval(secs => %(unmatched_after_s)s)
           AS window_passed,
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true) AS idle_timeout
  FROM payment_events WHERE id = %(id)s
   FOR UPDATE
"""

# -- payment_event_shipment -- the shipment an event names, or its payment's (unique key), locked.
PAYMENT_EVENT_SHIPMENT = """
SELECT shipment_id, total_cost, amount_paid, currency, payment_status
  FROM shipments
 WHERE shipment_id = coalesce(%(shipment_id)s::uuid,
                              (SELECT shipment_id FROM payment_transactions
                                WHERE idempotency_key = %(key)s AND transaction_type = 'payment'))
   FOR UPDATE
"""

# -- payment_event_next_due -- when the earliest open event comes due (payment_events_due_idx).
PAYMENT_EVENT_NEXT_DUE = """
SELECT min(next_attempt_at) FROM payment_events WHERE status IN ('received', 'processing')
"""


@dataclass(frozen=True)
class Drained:
    batches: int
    events: int
    applied: int


def _params(unmatched_after_s: float, **more: Any) -> dict[str, Any]:
    return {"unmatched_after_s": unmatched_after_s, "idle_timeout": LOCK_IDLE_TIMEOUT, **more}


def _unknown(row: dict[str, Any]) -> Result:
    if row["shipment_id"] is None:
        return Result(Outcome.WAITING, f"payment {row['idempotency_key']!r} not known yet")
    return Result(Outcome.WAITING, f"shipment {row['shipment_id']} not found")


def run_batch(
    conn: psycopg.Connection, batch: int = DEFAULT_BATCH, unmatched_after_s: float = DEFAULT_UNMATCHED_AFTER_S
) -> dict[int, Result]:
    """One batch in one transaction; the results by event id (empty: nothing was due). When the
    batch's writes fail, its events are processed again one by one."""
    handled: list[int] = []
    try:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            params = _params(unmatched_after_s, batch=batch)
            claim = cur.execute(PAYMENT_BATCH_CLAIM, params).fetchall()
            if not claim:
                return {}
            ships = list({r["shipment_id"]: r for r in claim if r["claimed"]}.values())
            missing = [r for r in claim if not r["found"]]
            events = []
            if ships:
                params["ships"] = [s["shipment_id"] for s in ships]
                events = cur.execute(PAYMENT_SHIPMENT_EVENTS, params).fetchall()
            handled = [r["id"] for r in events if r["mine"]] + [r["id"] for r in missing]
            ledgers = load_ledgers(cur, ships, events) if ships else {}
            outcomes = apply_in_order(ledgers, events, unmatched_after_s)
            for row in missing:
                outcomes.add(row, _unknown(row), unmatched_after_s)
            write(cur, ledgers.values(), outcomes)
            return outcomes.results
    except (BatchConflict, psycopg.Error) as exc:
        if conn.broken or len(handled) <= 1:
            raise
        logger.warning("payments: a batch of %d events failed (%s); one by one", len(handled), exc)
        return {pk: process_alone(conn, pk, unmatched_after_s) for pk in sorted(handled)}


def resolve_orphans(conn: psycopg.Connection) -> int:
    """Refunds and disputes that name only their payment get its shipment, once it is known."""
    with conn.transaction():
        return conn.execute(PAYMENT_EVENT_RESOLVE).rowcount


def drain(
    conn: psycopg.Connection,
    batch: int = DEFAULT_BATCH,
    unmatched_after_s: float = DEFAULT_UNMATCHED_AFTER_S,
    budget_s: float = DEFAULT_DRAIN_BUDGET_S,
) -> Drained:
    """Batches until none finds work it can do, or `budget_s` has passed."""
    deadline = time.monotonic() + budget_s
    batches = events = applied = 0
    resolve = True
    while time.monotonic() < deadline:
        if resolve:
            resolve_orphans(conn)
        results = run_batch(conn, batch, unmatched_after_s)
        # Again once this batch applied something (a payment that refunds and disputes wait for).
        resolve = any(r.outcome is Outcome.APPLIED for r in results.values())
        if not results:
            break
        batches += 1
        events += len(results)
        applied += sum(r.outcome is Outcome.APPLIED for r in results.values())
    return Drained(batches, events, applied)


def next_due(conn: psycopg.Connection) -> datetime | None:
    """When the earliest open event comes due (None: no open event)."""
    row = conn.execute(PAYMENT_EVENT_NEXT_DUE).fetchone()
    return row[0] if row else None


def process_event(
    conn: psycopg.Connection, event_pk: int, *, unmatched_after_s: float = DEFAULT_UNMATCHED_AFTER_S
) -> Result:
    """Process one event in one transaction (waiting for its shipment's lock); returns what
    happened. Safe to call any number of times: an event already processed changes nothing."""
    for attempt in range(1, CONFLICT_ATTEMPTS + 1):
        try:
            return _process_once(conn, event_pk, unmatched_after_s)
        except BatchConflict:
            if attempt == CONFLICT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def process_alone(conn: psycopg.Connection, event_pk: int, unmatched_after_s: float) -> Result:
    """`process_event`, and when it raises, its failure recorded on the event (retried later,
    dead after its attempts)."""
    try:
        return process_event(conn, event_pk, unmatched_after_s=unmatched_after_s)
    except Exception as exc:
        if conn.broken:
            raise
        logger.exception("payment event %s failed on its own", event_pk)
        failed = Result(Outcome.FAILED, f"{type(exc).__name__}: {exc}"[:1000])
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
            params = _params(unmatched_after_s, id=event_pk)
            row = cur.execute(PAYMENT_EVENT_LOCK, params).fetchone()
            if row is None or row["status"] not in ("received", "processing"):
                return Result(Outcome.DONE_BEFORE, "finished meanwhile")
            outcomes = Outcomes()
            outcomes.add(row, failed, unmatched_after_s)
            write(cur, [], outcomes)
            return outcomes.results[event_pk]


def _process_once(conn: psycopg.Connection, event_pk: int, unmatched_after_s: float) -> Result:
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        params = _params(unmatched_after_s, id=event_pk)
        row = cur.execute(PAYMENT_EVENT_LOCK, params).fetchone()
        if row is None:
            return Result(Outcome.DONE_BEFORE, f"no payment event {event_pk}")
        if row["status"] not in ("received", "processing"):
            return Result(Outcome.DONE_BEFORE, f"already {row['status']}")
        ship = cur.execute(
            PAYMENT_EVENT_SHIPMENT, {"shipment_id": row["shipment_id"], "key": row["idempotency_key"]}
        ).fetchone()
        outcomes = Outcomes()
        if ship is None:
            outcomes.add(row, _unknown(row), unmatched_after_s)
            write(cur, [], outcomes)
            return outcomes.results[event_pk]
        row["shipment_id"] = ship["shipment_id"]
        ledgers = load_ledgers(cur, [ship], [row])
        outcomes.add(row, decide(ledgers[ship["shipment_id"]], row), unmatched_after_s)
        write(cur, ledgers.values(), outcomes)
        return outcomes.results[event_pk]
