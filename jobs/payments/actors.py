"""The payments actors: process one inbox event; reconcile periodically."""

from __future__ import annotations

import logging

import config
from db import pool
from db.transient import retry_transient
from jobs.payments.apply import Outcome, process_event
from jobs.payments.reconcile import reconcile
from workers import PermanentError, actor

logger = logging.getLogger("skyport.payments")

# Queue of the payments actors.
QUEUE = "payments"


class EventNotReady(Exception):
    """The event waits (shipment not committed yet, refund before its payment): retried with backoff."""


@retry_transient(max_delay_s=30.0)
def _process(event_pk: int) -> object:
    with pool.connection() as conn:
        return process_event(conn, event_pk, unmatched_after_s=config.get().payments.unmatched_retry_s)


@actor(queue_name=QUEUE, max_retries=40, min_backoff_s=1.0, max_backoff_s=60.0, time_limit=120_000)
def process_payment_event(event_pk: int) -> None:
    result = _process(event_pk)
    if result.outcome is Outcome.WAITING:
        raise EventNotReady(result.reason)
    if result.outcome in (Outcome.UNMATCHED, Outcome.REJECTED):
        # The event row already says so (committed); the job ends dead with the same reason.
        raise PermanentError(f"payment event {event_pk} {result.outcome}: {result.reason}")
    if result.outcome is Outcome.IGNORED:
        logger.info("payment event %s ignored: %s", event_pk, result.reason)


@actor(queue_name=QUEUE, max_retries=3, time_limit=300_000)
def reconcile_payments() -> None:
    with pool.connection() as conn:
        reconcile(conn)
