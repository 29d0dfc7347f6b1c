"""The dispatch actor: woken by new notifications (jobs/notifications/queue.py `wake_dispatcher`)
and by the scheduler's tick (`notifications_dispatch`, every 10 s: retries that came due, missed
wake-ups). Several may run at once on different workers: the claims share the rows."""

from __future__ import annotations

import logging

from db import pool
from jobs.notifications.dispatch import dispatch_configured
from workers import actor

logger = logging.getLogger("skyport.notifications")


@actor(queue_name="notifications", max_retries=3, min_backoff_s=1, time_limit=10 * 60_000)
def dispatch_notifications() -> None:
    """Deliver due notifications until none is due or the time budget is spent."""
    with pool.connection() as conn:
        stats = dispatch_configured(conn)
    if stats.claimed or stats.reaped:
        logger.info("notifications dispatched: %s", stats.summary())
