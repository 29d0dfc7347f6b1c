"""The inbox: a verified webhook event is stored raw and its processing job enqueued, in one
short transaction (transactional enqueue). A duplicate delivery (same provider + event id) hits
the unique key and changes nothing. Ops functions for the dashboard live here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row

from jobs.payments.events import PaymentEvent
from workers import JobSpec, enqueue, enqueue_many

# The actor that processes one inbox event (jobs/payments/actors.py).
PROCESS_ACTOR = "process_payment_event"


def dedup_key(provider: str, event_id: str) -> str:
    return f"payment-event:{provider}:{event_id}"


@dataclass(frozen=True)
class Received:
    event_pk: int | None  # None: a duplicate of an event already received
    duplicate: bool


# -- payment_event_insert -- a batch of events in one statement; the unique key (provider, event_id)
# makes an event already received, or a second copy in the same batch, return no row.
PAYMENT_EVENT_INSERT = """
INSERT INTO payment_events (provider, event_id, event_type, payload, shipment_id, idempotency_key, created_at)
SELECT e.provider, e.event_id, e.event_type, e.payload, e.shipment_id, e.idempotency_key,
       to_timestamp(e.created)
  FROM unnest(%(provider)s::varchar[], %(event_id)s::varchar[], %(event_type)s::varchar[],
              %(payload)s::jsonb[], %(shipment_id)s::uuid[], %(idempotency_key)s::varchar[],
              %(created)s::bigint[])
       WITH ORDINALITY AS e(provider, event_id, event_type, payload, shipment_id, idempotency_key,
                            created, ord)
 ORDER BY e.ord
    ON CONFLICT (provider, event_id) DO NOTHING
RETURNING id, provider, event_id
"""


def receive(conn: psycopg.Connection, provider: str, event: PaymentEvent, body: bytes) -> Received:
    """Store an event (its raw body) and enqueue its processing job, atomically; a duplicate
    changes nothing."""
    return receive_many(conn, [(provider, event, body)])[0]


def receive_many(
    conn: psycopg.Connection, events: Sequence[tuple[str, PaymentEvent, bytes]]
) -> list[Received]:
    """Store events (provider, event, raw body) and enqueue the processing jobs of the new ones, in
    one transaction: one statement for the events, one for their jobs (per provider). A duplicate,
    of an event received before or earlier in the same batch, changes nothing."""
    columns: dict[str, list[Any]] = {
        "provider": [],
        "event_id": [],
        "event_type": [],
        "payload": [],
        "shipment_id": [],
        "idempotency_key": [],
        "created": [],
    }
    for provider, event, body in events:
        columns["provider"].append(provider)
        columns["event_id"].append(event.id)
        columns["event_type"].append(event.type)
        columns["payload"].append(body.decode())
        columns["shipment_id"].append(event.shipment_id)
        columns["idempotency_key"].append(event.idempotency_key)
        columns["created"].append(event.created)
    with conn.transaction():
        stored = {
            (provider, event_id): pk for pk, provider, event_id in conn.execute(PAYMENT_EVENT_INSERT, columns)
        }
        received: list[Received] = []
        jobs: dict[str, list[JobSpec]] = {}
        for provider, event, _ in events:
            pk = stored.pop((provider, event.id), None)  # popped: a second copy in the batch is a duplicate
            received.append(Received(pk, pk is None))
            if pk is not None:
                spec = JobSpec(PROCESS_ACTOR, args=[pk], dedup_key=dedup_key(provider, event.id))
                jobs.setdefault(provider, []).append(spec)
        for provider, specs in jobs.items():
            enqueue_many(specs, conn=conn, enqueued_by=f"webhook:{provider}")
    return received


# ---- ops (the dashboard calls these) -----------------------------------------------------------

PROBLEM_STATUSES = ("unmatched", "rejected")

# -- payment_event_problems -- unmatched / rejected events, newest first (payment_events_problem_idx).
PAYMENT_EVENT_PROBLEMS = """
SELECT id, provider, event_id, event_type, status, error, shipment_id, idempotency_key,
       payload->'data'->>'amount' AS amount, payload->'data'->>'currency' AS currency,
       received_at, processed_at, attempts, replayed_by, replayed_at
  FROM payment_events
 WHERE status IN ('unmatched', 'rejected')
 ORDER BY received_at DESC
 LIMIT %(limit)s
"""


def problem_events(conn: psycopg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Events that ended unmatched or rejected (with the reason in `error`), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(PAYMENT_EVENT_PROBLEMS, {"limit": limit}).fetchall()


def get_event(conn: psycopg.Connection, provider: str, event_id: str) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM payment_events WHERE provider = %s AND event_id = %s", (provider, event_id)
        ).fetchone()


def count_by_status(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM payment_events GROUP BY status").fetchall())


# -- payment_event_replay -- ops: an unmatched / rejected event starts over, with an audit row.
PAYMENT_EVENT_REPLAY = """
WITH replayed AS (
    UPDATE payment_events
       SET status = 'received', processed_at = NULL, attempts = 0, received_at = now(),
           replayed_by = %(by)s, replayed_at = now()
     WHERE provider = %(provider)s AND event_id = %(event_id)s AND status IN ('unmatched', 'rejected')
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
    """Process an unmatched or rejected event again (after ops fixed its cause); False when the
    event is not in one of those states. Audited, and enqueued in the same transaction."""
    with conn.transaction():
        row = conn.execute(
            PAYMENT_EVENT_REPLAY, {"provider": provider, "event_id": event_id, "by": by, "ip": ip}
        ).fetchone()
        if row is None:
            return False
        enqueue(
            PROCESS_ACTOR,
            args=[row[0]],
            dedup_key=dedup_key(provider, event_id),
            conn=conn,
            enqueued_by=by,
        )
    return True
