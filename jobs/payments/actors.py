"""The payments actors: drain the inbox in batches; process one event (PAYMENT_PROCESSING=per-event);
reconcile periodically."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import config
from db import pool
from db.transient import retry_transient
from jobs.payments.apply import Outcome
from jobs.payments.drain import drain, next_due, process_event
from jobs.payments.inbox import DRAIN_ACTOR, DRAIN_TICK_S
from jobs.payments.reconcile import reconcile
from workers import PermanentError, actor, enqueue

logger = logging.getLogger("skyport.payments")

# Queue of the payments actors.
QUEUE = "payments"
# Drains running at once, fleet-wide (workers/flow.py): more only contend for the same head of the
# inbox (SKIP LOCKED skips, a shipment's events stop at the first one another drain holds).
DRAINS = 4
# How long after its window a drain follows one that ended early: the intake's transactions that
# found the window's drain taken have committed by then (an enqueue precedes its commit by ms).
FOLLOW_UP_S = 0.25
# The soonest a drain for events that wait (backing off, or held by another worker) is scheduled
# again: a whole second, so that its key (the second it is due) is never that of the drain running.
MIN_REDRAIN_S = 1.0


class EventNotReady(Exception):
    """The event waits (shipment not committed yet, refund before its payment): retried with backoff."""


@retry_transient(max_delay_s=30.0)
def _drain() -> datetime | None:
    cfg = config.get().payments
    with pool.connection() as conn:
        drain(conn, cfg.batch, cfg.unmatched_retry_s)
        return next_due(conn)


@actor(
    queue_name=QUEUE,
    max_retries=10,
    min_backoff_s=1.0,
    max_backoff_s=30.0,
    time_limit=120_000,
    concurrency=DRAINS,
)
def drain_payment_events(tick: int | None = None) -> None:
    """Batches until nothing is due. The intake's transactions of one window (`tick`, its end in
    DRAIN_TICK_S since the epoch) share this job: one that commits after the job's last batch
    found its key taken, so a drain that ends before its window (and FOLLOW_UP_S) is over
    schedules one more for then. And when events wait, one drain for when the earliest comes due
    (one per second of due time: drains that end together schedule one)."""
    due = _drain()
    now = datetime.now(UTC)
    if tick is not None and now.timestamp() < tick * DRAIN_TICK_S + FOLLOW_UP_S:
        eta = datetime.fromtimestamp(tick * DRAIN_TICK_S + FOLLOW_UP_S, UTC)
        _schedule(eta, f"payments-drain:after:t{tick}")
    if due is not None:
        eta = max(due, now + timedelta(seconds=MIN_REDRAIN_S))
        _schedule(eta, f"payments-drain:{int(eta.timestamp())}")


def _schedule(eta: datetime, key: str) -> None:
    enqueue(DRAIN_ACTOR, eta=eta, dedup_key=key, enqueued_by="payments:drain")


@retry_transient(max_delay_s=30.0)
def _process(event_pk: int) -> object:
    with pool.connection() as conn:
        return process_event(conn, event_pk, unmatched_after_s=config.get().payments.unmatched_retry_s)


@actor(queue_name=QUEUE, max_retries=40, min_backoff_s=1.0, max_backoff_s=60.0, time_limit=120_000)
def process_payment_event(event_pk: int) -> None:
    result = _process(event_pk)
    if result.outcome in (Outcome.WAITING, Outcome.FAILED):
        raise EventNotReady(result.reason)
    if result.outcome in (Outcome.UNMATCHED, Outcome.REJECTED, Outcome.DEAD):
        # The event row already says so (committed); the job ends dead with the same reason.
        raise PermanentError(f"payment event {event_pk} {result.outcome}: {result.reason}")
    if result.outcome is Outcome.IGNORED:
        logger.info("payment event %s ignored: %s", event_pk, result.reason)


@actor(queue_name=QUEUE, max_retries=3, time_limit=300_000)
def reconcile_payments() -> None:
    with pool.connection() as conn:
        reconcile(conn)
