"""Quote expiry: `quoted` quotes whose `valid_until` passed become `expired`, each with one
notification to its owner (dedup key `quote-expired:<quote_id>`) and one audit_log row, in the
same transaction as the status change.

Concurrency: the claim locks its quotes with FOR UPDATE SKIP LOCKED, so several expiry workers
take different quotes, and a quote that a conversion (convert_quote_to_shipment locks the quote
row) or an acceptance holds is skipped, not waited for. The UPDATE re-checks `quote_status =
'quoted'`, so a quote accepted or converted just before is never touched; a conversion that waits
on a quote this job expired then finds it `expired` and fails. Accepted and converted quotes are
never selected. Re-running is harmless: expired quotes are no longer `quoted`, and the
notification's dedup key makes a second one impossible. The version trigger bumps `version` once
per expiry, as for any other update.

Throughput: each expired quote costs the database about 60-75 us of CPU (measured with perf on
PostgreSQL 15: most of it index maintenance - the quote's update is never HOT, it changes
`quote_status`, so all 4 of its indexes get an entry, plus 4 for the notification and 3 for the
audit row - then the notification's foreign-key check and WAL), so one loop of batches keeps one
server core busy. A backlog (the first batch came back full) is therefore worked by `expirers`
loops at once, each on its own connection; SKIP LOCKED hands each loop different quotes.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
from psycopg_pool import PoolTimeout

logger = logging.getLogger("skyport.quotes")

# Quotes expired per transaction.
DEFAULT_BATCH = 1000
# Loops of batches working a backlog at once (one per core of the database server is the ceiling).
DEFAULT_EXPIRERS = 2
# A helper loop waits this long for a pooled connection; without one the run goes on with fewer loops.
DEFAULT_HELPER_CONNECT_TIMEOUT_S = 1.0
# An expiry run stops after this long; the next minute's tick goes on.
DEFAULT_TIME_BUDGET_S = 50.0
# `audit_log.performed_by` of this job's rows.
PERFORMED_BY = "job:expire_quotes"
# Channels of the "your quote expired" notification.
DEFAULT_CHANNELS: tuple[str, ...] = ("in_app", "email")

# -- quote_expire_due -- idx_quotes_valid_until (valid_until WHERE quote_status = 'quoted').
# ORDER BY valid_until makes PostgreSQL walk that partial index from its oldest entry and stop after
# one batch; without it the planner often picks a full scan of quotes, and each batch gets slower
# (measured on PostgreSQL 15). The update finds the claimed rows by ctid (a TID scan: no second
# lookup in the primary key, whose random UUIDs make that lookup a cache miss on a large table); the
# ctids are stable because the claim holds the rows' locks. One statement: claim, expire, notify,
# audit, all or nothing.
QUOTE_EXPIRE_DUE = """
WITH claimed AS MATERIALIZED (
    SELECT ctid AS row_id FROM quotes
     WHERE quote_status = 'quoted' AND valid_until < LOCALTIMESTAMP
     ORDER BY valid_until
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED),
expired AS (
    UPDATE quotes AS q
       SET quote_status = 'expired'
      FROM claimed
     WHERE q.ctid = claimed.row_id AND q.quote_status = 'quoted'
 RETURNING q.quote_id, q.user_id, q.valid_until, q.version),
notified AS (
    INSERT INTO notification_queue (user_id, notification_type, dedup_key, title, message, metadata,
                                    send_via)
    SELECT user_id, 'quote_expired', 'quote-expired:' || quote_id, 'Your quote has expired',
           format('Your quote %%s was valid until %%s and has expired. Ask for a new quote to ship.',
                  quote_id, to_char(valid_until, 'YYYY-MM-DD HH24:MI')),
           jsonb_build_object('quote_id', quote_id, 'valid_until', valid_until),
           %(send_via)s::varchar[]
      FROM expired
        ON CONFLICT (dedup_key) DO NOTHING
 RETURNING queue_id),
audited AS (
    INSERT INTO audit_log (table_name, record_id, action, user_id, performed_by, old_values, new_values,
                           changed_fields, reason)
    SELECT 'quotes', quote_id::text, 'UPDATE', NULL, %(performed_by)s,
           jsonb_build_object('quote_status', 'quoted', 'version', version - 1),
           jsonb_build_object('quote_status', 'expired', 'version', version, 'valid_until', valid_until),
           ARRAY['quote_status'], 'expire'
      FROM expired
 RETURNING 1)
SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM notified), (SELECT count(*) FROM audited)
"""


@dataclass
class ExpiryStats:
    expired: int = 0
    notified: int = 0
    batches: int = 0
    # Loops that did the work (this one and the helpers that got a connection).
    expirers: int = 1

    def summary(self) -> str:
        """The run in a sentence (the command's output, the actor's log line)."""
        return (
            f"expired {self.expired} quote(s), {self.notified} notification(s), in {self.batches} batch(es)"
        )

    def add(self, other: ExpiryStats) -> None:
        self.expired += other.expired
        self.notified += other.notified
        self.batches += other.batches


def expire_batch(
    conn: psycopg.Connection,
    batch: int = DEFAULT_BATCH,
    *,
    performed_by: str = PERFORMED_BY,
    send_via: Sequence[str] = DEFAULT_CHANNELS,
) -> tuple[int, int]:
    """Expire one batch in one statement (in the caller's transaction if one is open); returns
    (quotes expired, notifications created)."""
    expired, notified, _ = conn.execute(
        QUOTE_EXPIRE_DUE, {"batch": batch, "performed_by": performed_by, "send_via": list(send_via)}
    ).fetchone()
    return expired, notified


def expire_batches(
    conn: psycopg.Connection,
    deadline: float,
    *,
    batch: int = DEFAULT_BATCH,
    performed_by: str = PERFORMED_BY,
    send_via: Sequence[str] = DEFAULT_CHANNELS,
    max_batches: int | None = None,
) -> ExpiryStats:
    """Batches, each its own transaction, until one comes back short (nothing due is left that
    another loop does not hold), `max_batches` are done or `deadline` (time.monotonic()) passed."""
    stats = ExpiryStats()
    while time.monotonic() < deadline and (max_batches is None or stats.batches < max_batches):
        with conn.transaction():
            expired, notified = expire_batch(conn, batch, performed_by=performed_by, send_via=send_via)
        stats.batches += 1
        stats.expired += expired
        stats.notified += notified
        if expired < batch:
            break
    return stats


# Gives an autocommit connection for a helper loop: `pool.connection`, or `psycopg.connect` in a bench.
Connect = Callable[[], contextlib.AbstractContextManager[psycopg.Connection]]


def expire_configured(conn: psycopg.Connection) -> ExpiryStats:
    """`expire_due_quotes` with the batch and loops of the settings, helpers on pooled connections
    (actor and CLI)."""
    import config
    from db import pool

    cfg = config.get()
    return expire_due_quotes(
        conn,
        batch=cfg.quotes.expiry_batch,
        expirers=cfg.quotes.expirers,
        connect=functools.partial(pool.connection, timeout_s=DEFAULT_HELPER_CONNECT_TIMEOUT_S),
    )


def expire_due_quotes(
    conn: psycopg.Connection,
    *,
    batch: int = DEFAULT_BATCH,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    performed_by: str = PERFORMED_BY,
    send_via: Sequence[str] = DEFAULT_CHANNELS,
    wake: bool = True,
    expirers: int = 1,
    connect: Connect | None = None,
) -> ExpiryStats:
    """Expire due quotes batch by batch (each batch its own transaction) until none is due or the
    time budget is spent; then wake the notification dispatcher once. `conn`: autocommit.

    With `expirers` > 1 and `connect`, a backlog (the first batch came back full) is worked by that
    many loops at once: this one on `conn`, each other one on a thread with a connection from
    `connect`. A helper that gets no connection (a busy pool) is left out; an error of a helper is
    raised once every loop has stopped (what the others committed stays, and is notified)."""
    deadline = time.monotonic() + time_budget_s
    loop = functools.partial(expire_batches, batch=batch, performed_by=performed_by, send_via=send_via)
    stats = loop(conn, deadline, max_batches=1)
    errors: list[Exception] = []
    if stats.expired == batch and connect is not None and expirers > 1:
        errors = _with_helpers(conn, connect, expirers - 1, loop, deadline, stats)
    elif stats.expired == batch:
        stats.add(loop(conn, deadline))
    if stats.notified and wake:
        # After the batches committed: the dispatch job sees every row (a crash before this line
        # leaves them to the dispatcher's periodic tick).
        from jobs.notifications.queue import wake_dispatcher

        wake_dispatcher(conn)
    if errors:
        raise errors[0]
    return stats


def _with_helpers(
    conn: psycopg.Connection,
    connect: Connect,
    helpers: int,
    loop: Callable[..., ExpiryStats],
    deadline: float,
    stats: ExpiryStats,
) -> list[Exception]:
    """`loop` on `conn` and on `helpers` threads at once, their counts added to `stats`; returns
    the helpers' errors."""
    errors: list[Exception] = []
    with ThreadPoolExecutor(helpers, thread_name_prefix="quote-expiry") as executor:
        running = [executor.submit(_helper_batches, connect, loop, deadline) for _ in range(helpers)]
        try:
            stats.add(loop(conn, deadline))
        finally:
            for future in running:
                try:
                    helped = future.result()
                except Exception as exc:  # the caller raises it, after the wake-up for what committed
                    errors.append(exc)
                    continue
                if helped is not None:
                    stats.add(helped)
                    stats.expirers += 1
    return errors


def _helper_batches(
    connect: Connect, loop: Callable[..., ExpiryStats], deadline: float
) -> ExpiryStats | None:
    """One helper loop on its own connection; None when no connection could be had."""
    with contextlib.ExitStack() as stack:
        try:
            conn = stack.enter_context(connect())
        except PoolTimeout:
            logger.warning("quote expiry: no free connection for a helper loop, going on without it")
            return None
        return loop(conn, deadline)
