"""The SQL of notification_queue: enqueue, claim, finish, lease recovery, ops actions.

States: pending -> processing (claimed, leased) -> sent; processing -> failed (retried when
`next_retry_at` comes) -> processing ...; processing -> dead (attempts used up, or a permanent
error); dead -> pending (ops retry, attempts reset). A claim counts as an attempt, so a row whose
dispatcher died with it (expired lease) also uses one up. Every write names the state it expects
and, for a claimed row, the dispatcher holding it (`locked_by`): a late writer changes nothing.

Times are `TIMESTAMP` (no zone) like the seed's columns, compared with `LOCALTIMESTAMP`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

logger = logging.getLogger("skyport.notifications")

# The actor the wake-ups enqueue (jobs/notifications/actors.py).
DISPATCH_ACTOR = "dispatch_notifications"
# Dedup key of the wake-up job: at most one queued or running dispatch per key.
WAKE_KEY = "notifications:dispatch"
# A second wake-up key, used when the first one's job is already running (it may have made its
# last claim before our row was committed).
WAKE_FOLLOWUP_KEY = "notifications:dispatch:followup"
# Attempts a notification gets unless the caller says otherwise (the seed's column default).
DEFAULT_MAX_ATTEMPTS = 3
# Channels of a row whose send_via is NULL.
DEFAULT_CHANNELS = ("in_app",)


@dataclass(frozen=True)
class Claimed:
    """A claimed notification, with what its channels need."""

    queue_id: int
    user_id: UUID
    notification_type: str
    dedup_key: str
    title: str
    message: str
    metadata: dict[str, Any]
    send_via: tuple[str, ...]
    channels_done: tuple[str, ...]
    attempts: int
    max_attempts: int
    email: str | None = None
    phone: str | None = None


@dataclass(frozen=True)
class Failure:
    """How one claimed row failed: the error text, whether retrying can help, the delay if so."""

    queue_id: int
    error: str
    permanent: bool
    delay_s: float
    channels_done: tuple[str, ...]


# -- notification_insert -- the dedup key's unique constraint decides: a duplicate is no row.
NOTIFICATION_INSERT = """
INSERT INTO notification_queue (user_id, shipment_id, notification_type, dedup_key, title, message,
                                metadata, send_via, max_attempts, next_retry_at)
VALUES (%(user_id)s, %(shipment_id)s, %(notification_type)s, %(dedup_key)s, %(title)s, %(message)s,
        %(metadata)s, %(send_via)s, %(max_attempts)s, %(not_before)s)
    ON CONFLICT (dedup_key) DO NOTHING
RETURNING queue_id
"""


def enqueue_notification(
    conn: psycopg.Connection,
    user_id: UUID | str,
    notification_type: str,
    title: str,
    message: str,
    dedup_key: str,
    *,
    shipment_id: UUID | str | None = None,
    metadata: dict[str, Any] | None = None,
    send_via: Sequence[str] = DEFAULT_CHANNELS,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    not_before: Any = None,
    wake: bool = True,
) -> bool:
    """Insert a notification in the caller's transaction; True if it is new, False if a
    notification with this dedup key exists already (then nothing changes).

    `wake` also enqueues a dispatch job in the same transaction (it goes out at commit, so the
    row is sent within about a second). Note: the wake-up's dedup key is a unique-index entry, so
    a second transaction waking the dispatcher waits for the first one's commit; keep such
    transactions short, or pass wake=False and call `wake_dispatcher()` after committing.
    """
    if not dedup_key:
        raise ValueError("a notification needs a non-empty dedup_key")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
    row = conn.execute(
        NOTIFICATION_INSERT,
        {
            "user_id": user_id,
            "shipment_id": shipment_id,
            "notification_type": notification_type,
            "dedup_key": dedup_key,
            "title": title,
            "message": message,
            "metadata": json.dumps(metadata) if metadata is not None else None,
            "send_via": list(send_via),
            "max_attempts": max_attempts,
            "not_before": not_before,
        },
    ).fetchone()
    if row is None:
        return False
    if wake:
        wake_dispatcher(conn)
    return True


def wake_dispatcher(conn: psycopg.Connection | None = None) -> None:
    """Enqueue a dispatch job (deduplicated), in `conn`'s transaction if given."""
    from workers import enqueue

    ref = enqueue(DISPATCH_ACTOR, dedup_key=WAKE_KEY, conn=conn, enqueued_by="notifications")
    if not ref.created and ref.state == "running":
        enqueue(DISPATCH_ACTOR, dedup_key=WAKE_FOLLOWUP_KEY, conn=conn, enqueued_by="notifications")


# -- notification_claim_due -- idx_notif_queue_due: due rows (new ones FIFO, retries when due) in
# due order; the index scan stops after one batch. SKIP LOCKED: concurrent claimers take other rows.
NOTIFICATION_CLAIM_DUE = """
WITH claimed AS MATERIALIZED (
    SELECT queue_id FROM notification_queue
     WHERE status IN ('pending', 'failed')
       AND coalesce(next_retry_at, created_at, '-infinity'::timestamp) <= LOCALTIMESTAMP
       AND coalesce(attempts, 0) < coalesce(max_attempts, 1)
     ORDER BY coalesce(next_retry_at, created_at, '-infinity'::timestamp)
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE notification_queue AS n
   SET status = 'processing', attempts = coalesce(n.attempts, 0) + 1,
       locked_by = %(worker)s, locked_until = LOCALTIMESTAMP + make_interval(secs => %(lease_s)s),
       updated_at = LOCALTIMESTAMP
  FROM claimed
 WHERE n.queue_id = claimed.queue_id
RETURNING n.queue_id, n.user_id, n.notification_type, n.dedup_key, n.title, n.message, n.metadata,
          n.send_via, n.channels_done, n.attempts, coalesce(n.max_attempts, 1) AS max_attempts
"""

# -- notification_recipients -- users' addresses for the rows that leave the building (users pkey).
NOTIFICATION_RECIPIENTS = "SELECT user_id, email, phone FROM users WHERE user_id = ANY(%s)"


def claim_due(
    conn: psycopg.Connection, worker: str, batch: int, lease_s: float, with_recipients: bool = True
) -> list[Claimed]:
    """Claim up to `batch` due rows for `worker` (committed before returning: `conn` is in
    autocommit mode, the claim is one statement)."""
    rows = conn.execute(
        NOTIFICATION_CLAIM_DUE, {"batch": batch, "worker": worker, "lease_s": lease_s}
    ).fetchall()
    need_address = [r[1] for r in rows if set(r[7] or DEFAULT_CHANNELS) - {"in_app"}]
    addresses: dict[UUID, tuple[str | None, str | None]] = {}
    if need_address and with_recipients:
        for user_id, email, phone in conn.execute(NOTIFICATION_RECIPIENTS, (need_address,)):
            addresses[user_id] = (email, phone)
    claimed = []
    for r in rows:
        email, phone = addresses.get(r[1], (None, None))
        claimed.append(
            Claimed(
                queue_id=r[0],
                user_id=r[1],
                notification_type=r[2],
                dedup_key=r[3],
                title=r[4],
                message=r[5],
                metadata=r[6] or {},
                send_via=tuple(r[7] or DEFAULT_CHANNELS),
                channels_done=tuple(r[8] or ()),
                attempts=r[9],
                max_attempts=r[10],
                email=email,
                phone=phone,
            )
        )
    return claimed


# -- notification_mark_sent -- only rows this dispatcher still holds (pkey).
NOTIFICATION_MARK_SENT = """
UPDATE notification_queue AS n
   SET status = 'sent', sent_at = LOCALTIMESTAMP,
       delivered_at = CASE WHEN 'in_app' = ANY(coalesce(n.send_via, ARRAY['in_app']::varchar[]))
                           THEN LOCALTIMESTAMP ELSE n.delivered_at END,
       channels_done = coalesce(n.send_via, ARRAY['in_app']::varchar[]),
       last_error = NULL, next_retry_at = NULL, locked_by = NULL, locked_until = NULL,
       updated_at = LOCALTIMESTAMP
 WHERE n.queue_id = ANY(%(ids)s) AND n.status = 'processing' AND n.locked_by = %(worker)s
RETURNING n.queue_id
"""


def mark_sent(conn: psycopg.Connection, worker: str, queue_ids: Sequence[int]) -> set[int]:
    """Mark delivered rows sent; returns the ids this dispatcher still held."""
    if not queue_ids:
        return set()
    done = {r[0] for r in conn.execute(NOTIFICATION_MARK_SENT, {"ids": list(queue_ids), "worker": worker})}
    lost = set(queue_ids) - done
    if lost:
        logger.warning("notifications %s were sent but their lease had passed to another dispatcher", lost)
    return done


# -- notification_mark_failed -- retried after its delay, or dead (attempts used up, permanent error).
NOTIFICATION_MARK_FAILED = """
UPDATE notification_queue AS n
   SET status = CASE WHEN f.permanent OR n.attempts >= coalesce(n.max_attempts, 1)
                     THEN 'dead' ELSE 'failed' END,
       next_retry_at = CASE WHEN f.permanent OR n.attempts >= coalesce(n.max_attempts, 1)
                            THEN NULL ELSE LOCALTIMESTAMP + make_interval(secs => f.delay_s) END,
       last_error = f.error,
       channels_done = string_to_array(f.done, ',')::varchar[],
       locked_by = NULL, locked_until = NULL, updated_at = LOCALTIMESTAMP
  FROM unnest(%(ids)s::bigint[], %(errors)s::text[], %(permanent)s::bool[], %(delay_s)s::float8[],
              %(done)s::text[]) AS f(queue_id, error, permanent, delay_s, done)
 WHERE n.queue_id = f.queue_id AND n.status = 'processing' AND n.locked_by = %(worker)s
RETURNING n.queue_id, n.status
"""


def mark_failed(conn: psycopg.Connection, worker: str, failures: Sequence[Failure]) -> dict[int, str]:
    """Record failed deliveries; returns {queue_id: new status} for the rows still held."""
    if not failures:
        return {}
    rows = conn.execute(
        NOTIFICATION_MARK_FAILED,
        {
            "worker": worker,
            "ids": [f.queue_id for f in failures],
            "errors": [f.error for f in failures],
            "permanent": [f.permanent for f in failures],
            "delay_s": [f.delay_s for f in failures],
            "done": [",".join(f.channels_done) for f in failures],
        },
    ).fetchall()
    return dict(rows)


# -- notification_release -- give back claimed rows not attempted (lease too short to go on):
# the claim's attempt did not happen.
NOTIFICATION_RELEASE = """
UPDATE notification_queue
   SET status = 'pending', attempts = greatest(attempts - 1, 0), locked_by = NULL, locked_until = NULL,
       updated_at = LOCALTIMESTAMP
 WHERE queue_id = ANY(%(ids)s) AND status = 'processing' AND locked_by = %(worker)s
"""


def release(conn: psycopg.Connection, worker: str, queue_ids: Iterable[int]) -> int:
    ids = list(queue_ids)
    if not ids:
        return 0
    return conn.execute(NOTIFICATION_RELEASE, {"ids": ids, "worker": worker}).rowcount


# -- notification_reap_leases -- idx_notif_queue_lease: rows whose dispatcher died with them are
# claimable again at once ('failed', due now), or dead when that was their last attempt.
NOTIFICATION_REAP_LEASES = """
WITH expired AS MATERIALIZED (
    SELECT queue_id FROM notification_queue
     WHERE status = 'processing' AND locked_until < LOCALTIMESTAMP
     ORDER BY locked_until
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE notification_queue AS n
   SET status = CASE WHEN n.attempts >= coalesce(n.max_attempts, 1) THEN 'dead' ELSE 'failed' END,
       next_retry_at = CASE WHEN n.attempts >= coalesce(n.max_attempts, 1) THEN NULL ELSE LOCALTIMESTAMP END,
       last_error = concat('lease of ', n.locked_by, ' expired at ', n.locked_until,
                           ' (dispatcher died or stalled)'),
       locked_by = NULL, locked_until = NULL, updated_at = LOCALTIMESTAMP
  FROM expired
 WHERE n.queue_id = expired.queue_id AND n.status = 'processing'
RETURNING n.queue_id, n.status
"""


def reap_expired_leases(conn: psycopg.Connection, batch: int = 1000) -> dict[str, int]:
    """Make rows of dead dispatchers claimable again; returns counts by new status."""
    counts: dict[str, int] = {}
    while True:
        rows = conn.execute(NOTIFICATION_REAP_LEASES, {"batch": batch}).fetchall()
        for queue_id, status in rows:
            counts[status] = counts.get(status, 0) + 1
            logger.warning("notification %s: lease expired, now %s", queue_id, status)
        if len(rows) < batch:
            return counts


# ---- ops ---------------------------------------------------------------------------------------

# -- notification_list_dead -- idx_notif_queue_dead, newest first.
NOTIFICATION_LIST_DEAD = """
SELECT queue_id, user_id, notification_type, dedup_key, title, send_via, channels_done, attempts,
       max_attempts, last_error, created_at, updated_at
  FROM notification_queue
 WHERE status = 'dead'
 ORDER BY updated_at DESC NULLS LAST
 LIMIT %(limit)s
"""


# -- notification_count_dead -- idx_notif_queue_dead.
NOTIFICATION_COUNT_DEAD = "SELECT count(*) FROM notification_queue WHERE status = 'dead'"


def count_dead(conn: psycopg.Connection) -> int:
    return conn.execute(NOTIFICATION_COUNT_DEAD).fetchone()[0]


def list_dead(conn: psycopg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """Dead notifications for ops (dashboard, CLI), newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(NOTIFICATION_LIST_DEAD, {"limit": limit}).fetchall()


# -- notification_retry_dead -- ops: a dead row starts over (attempts reset), with an audit row.
NOTIFICATION_RETRY_DEAD = """
WITH retried AS (
    UPDATE notification_queue
       SET status = 'pending', attempts = 0, next_retry_at = NULL, locked_by = NULL, locked_until = NULL,
           updated_at = LOCALTIMESTAMP
     WHERE queue_id = ANY(%(ids)s) AND status = 'dead'
 RETURNING queue_id, last_error),
audited AS (
    INSERT INTO audit_log (table_name, record_id, action, performed_by, ip_address, old_values,
                           new_values, changed_fields, reason)
    SELECT 'notification_queue', queue_id::text, 'UPDATE', %(performed_by)s, %(ip)s::inet,
           jsonb_build_object('status', 'dead', 'last_error', last_error),
           jsonb_build_object('status', 'pending', 'attempts', 0),
           ARRAY['status', 'attempts', 'next_retry_at'], 'retry'
      FROM retried)
SELECT queue_id FROM retried
"""


def retry_dead(
    conn: psycopg.Connection, queue_ids: Sequence[int], performed_by: str, ip: str | None = None
) -> list[int]:
    """Put dead notifications back to pending with their attempts reset; returns the ids that were
    dead (others are left alone). Writes audit_log and wakes the dispatcher, in one transaction."""
    with conn.transaction():
        ids = [
            r[0]
            for r in conn.execute(
                NOTIFICATION_RETRY_DEAD,
                {"ids": list(queue_ids), "performed_by": performed_by, "ip": ip},
            )
        ]
        if ids:
            wake_dispatcher(conn)
    return sorted(ids)
