"""The inbox: a verified webhook event is stored raw (with the internal event its adapter made of it)
and its processing enqueued, in one short transaction (transactional enqueue): one drain job per
DRAIN_TICK_S of transactions (`PAYMENT_PROCESSING=batch`), or one job per event (`per-event`, the
earlier path). A duplicate delivery (same provider + event id) hits the unique key and changes
nothing; an event type no adapter handles is stored `ignored`, with no job. Ops functions for the
dashboard live here too.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

import config
from db.states import PROBLEM_EVENT_STATUSES
from jobs.payments.events import PaymentEvent, event_body
from jobs.payments.providers.base import Ignored, Parsed
from workers import JobSpec, enqueue_many

# The actors that process events (jobs/payments/actors.py): batches, or one event.
DRAIN_ACTOR = "drain_payment_events"
# The intake's transactions within one window of this many seconds share one drain job.
DRAIN_TICK_S = 0.25
PROCESS_ACTOR = "process_payment_event"


def dedup_key(provider: str, event_id: str) -> str:
    return f"payment-event:{provider}:{event_id}"


@dataclass(frozen=True)
class Received:
    event_pk: int | None  # None: a duplicate of an event already received
    duplicate: bool
    ignored: bool = False


# A delivery: provider, its parsed event, the raw body, and optionally the gateway's event type and
# whether the body is itself the internal event document (Standard Webhooks: not stored twice).
Delivery = tuple[str, Parsed, bytes] | tuple[str, Parsed, bytes, str] | tuple[str, Parsed, bytes, str, bool]

# -- payment_event_insert -- a batch of events in one statement; the unique key (provider, event_id)
# makes an event already received, or a second copy in the same batch, return no row. An event
# that moves no money is stored ignored. `normalized` is NULL when the payload is itself the internal
# event (a Standard Webhooks provider's) and for ignored events.
PAYMENT_EVENT_INSERT = """
INSERT INTO payment_events (provider, event_id, event_type, payload, normalized, shipment_id, idempotency_key,
                            created_at, status, processed_at, error)
SELECT e.provider, e.event_id, e.event_type, e.payload, e.normalized, e.shipment_id, e.idempotency_key,
       to_timestamp(e.created),
       CASE WHEN e.ignored THEN 'ignored' ELSE 'received' END,
       CASE WHEN e.ignored THEN now() END, e.reason
  FROM unnest(%(provider)s::varchar[], %(event_id)s::varchar[], %(event_type)s::varchar[],
              %(payload)s::jsonb[], %(normalized)s::jsonb[], %(shipment_id)s::uuid[],
              %(idempotency_key)s::varchar[], %(created)s::bigint[], %(reason)s::text[],
              %(ignored)s::bool[])
       WITH ORDINALITY AS e(provider, event_id, event_type, payload, normalized, shipment_id, idempotency_key,
                            created, reason, ignored, ord)
 ORDER BY e.ord
    ON CONFLICT (provider, event_id) DO NOTHING
RETURNING id, provider, event_id
"""


def receive(conn: psycopg.Connection, provider: str, event: Parsed, body: bytes) -> Received:
    """Store an event (its raw body) and enqueue its processing, atomically; a duplicate changes
    nothing."""
    return receive_many(conn, [(provider, event, body)])[0]


def _columns(events: Sequence[Delivery]) -> dict[str, list[Any]]:
    columns: dict[str, list[Any]] = {
        name: []
        for name in ("provider", "event_id", "event_type", "payload", "normalized", "shipment_id",
                     "idempotency_key", "created", "reason", "ignored")
    }  # fmt: skip
    for provider, event, body, *rest in events:
        known = isinstance(event, PaymentEvent)
        gateway_type, raw_is_internal = [*rest, None, False][:2]
        columns["provider"].append(provider)
        columns["event_id"].append(event.id)
        columns["event_type"].append(gateway_type or event.type)
        columns["payload"].append(body.decode())
        columns["normalized"].append(json.dumps(event_body(event)) if known and not raw_is_internal else None)
        columns["shipment_id"].append(event.shipment_id if known else None)
        columns["idempotency_key"].append(event.idempotency_key if known else None)
        columns["created"].append(event.created)
        columns["reason"].append(event.reason if isinstance(event, Ignored) else None)
        columns["ignored"].append(not known)
    return columns


def receive_many(
    conn: psycopg.Connection,
    events: Sequence[Delivery],
    *,
    processing: str | None = None,
    enqueued_by: str | None = None,
) -> list[Received]:
    """Store events (provider, parsed event, raw body[, gateway type]) and enqueue the processing of
    the new ones, in one transaction: one statement for the events, one for their job(s). A
    duplicate, of an event received before or earlier in the same batch, changes nothing."""
    mode = processing or config.get().payments.processing
    with conn.transaction():
        stored = {
            (provider, event_id): pk
            for pk, provider, event_id in conn.execute(PAYMENT_EVENT_INSERT, _columns(events))
        }
        received: list[Received] = []
        new: list[tuple[str, str, int]] = []
        for provider, event, *_ in events:
            pk = stored.pop((provider, event.id), None)  # popped: a second copy in the batch is a duplicate
            ignored = isinstance(event, Ignored)
            received.append(Received(pk, pk is None, ignored))
            if pk is not None and not ignored:
                new.append((provider, event.id, pk))
        tick, database = drain_tick(), (conn.info.host, conn.info.port, conn.info.dbname)
        known = mode == "batch" and _drain_enqueued.get(database) == tick
        jobs = [] if known else processing_jobs(new, mode, tick)
        if jobs:
            enqueue_many(jobs, conn=conn, enqueued_by=enqueued_by or f"webhook:{events[0][0]}")
    if jobs and mode == "batch":
        _drain_enqueued[database] = tick  # committed: the window's drain exists
    return received


# By database, the window whose drain this process committed last: its other transactions of the
# window need not enqueue it again (a statement fewer each). Sharing the drain of another
# transaction is what the window's dedup key does anyway, and it is covered the same way (the
# drain's follow-up after its window, jobs/payments/actors.py).
_drain_enqueued: dict[tuple[str, int, str], int] = {}


def drain_tick(now: float | None = None) -> int:
    """The end of the current DRAIN_TICK_S window, in windows since the epoch."""
    return math.floor((time.time() if now is None else now) / DRAIN_TICK_S) + 1


def processing_jobs(
    events: Sequence[tuple[str, str, int]], mode: str | None = None, tick: int | None = None
) -> list[JobSpec]:
    """The jobs that process these events (provider, event id, row id): one drain per DRAIN_TICK_S
    window for every transaction in it (its dedup key names the window), or one job per event
    (PAYMENT_PROCESSING=per-event)."""
    if (mode or config.get().payments.processing) == "batch":
        tick = tick or drain_tick()
        return [JobSpec(DRAIN_ACTOR, args=[tick], dedup_key=f"payments-drain:t{tick}")] if events else []
    return [JobSpec(PROCESS_ACTOR, args=[pk], dedup_key=dedup_key(p, event_id)) for p, event_id, pk in events]


# ---- ops (the dashboard calls these) -----------------------------------------------------------

PROBLEM_STATUSES = PROBLEM_EVENT_STATUSES

# -- payment_event_problems -- unmatched / rejected / dead events, newest first (payment_events_problem_idx).
PAYMENT_EVENT_PROBLEMS = """
SELECT id, provider, event_id, event_type, status, error, shipment_id, idempotency_key,
       coalesce(coalesce(normalized, payload)->'data'->>'amount',
                coalesce(normalized, payload)->'data'->'refund'->>'amount',
                coalesce(normalized, payload)->'data'->'dispute'->>'amount') AS amount,
       coalesce(normalized, payload)->'data'->>'currency' AS currency,
       received_at, processed_at, attempts, replayed_by, replayed_at
  FROM payment_events
 WHERE status IN ('unmatched', 'rejected', 'dead')
 ORDER BY received_at DESC
 LIMIT %(limit)s
"""


def problem_events(conn: psycopg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Events that ended unmatched, rejected or dead (with the reason in `error`), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(PAYMENT_EVENT_PROBLEMS, {"limit": limit}).fetchall()


def get_event(conn: psycopg.Connection, provider: str, event_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM payment_events WHERE provider = %s AND event_id = %s", (provider, event_id)
        ).fetchone()


def count_by_status(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM payment_events GROUP BY status").fetchall())


# -- payment_event_replay -- ops: an unmatched / rejected / dead event starts over, with an audit row.
PAYMENT_EVENT_REPLAY = """
WITH replayed AS (
    UPDATE payment_events
       SET status = 'received', processed_at = NULL, attempts = 0, received_at = now(),
           next_attempt_at = now(), replayed_by = %(by)s, replayed_at = now()
     WHERE provider = %(provider)s AND event_id = %(event_id)s AND status IN ('unmatched', 'rejected', 'dead')
 RETURNING id, error),
audited AS (
    INSERT INTO audit_log (table_name, record_id, action, performed_by, ip_address, old_values,
                           new_values, changed_fields, reason)
    SELECT 'payment_events', id::text, 'UPDATE', %(by)s, %(ip)s::inet, jsonb_build_object('error', error),
           jsonb_build_object('status', 'received', 'provider', %(provider)s::text,
                              'event_id', %(event_id)s::text),
           ARRAY['status', 'attempts'], 'replay'
      FROM replayed)
SELECT id FROM replayed
"""


def replay_event(
    conn: psycopg.Connection, provider: str, event_id: str, by: str, ip: str | None = None
) -> bool:
    """Process an unmatched, rejected or dead event again (after ops fixed its cause); False when
    the event is not in one of those states. Audited, and enqueued in the same transaction."""
    with conn.transaction():
        row = conn.execute(
            PAYMENT_EVENT_REPLAY, {"provider": provider, "event_id": event_id, "by": by, "ip": ip}
        ).fetchone()
        if row is None:
            return False
        enqueue_many(
            processing_jobs([(provider, event_id, row[0])]),
            conn=conn,
            enqueued_by=by,
        )
    return True
