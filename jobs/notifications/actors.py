"""The dispatch actor: woken by new notifications (jobs/notifications/queue.py `wake_dispatcher`)
and by the scheduler's tick (`notifications_dispatch`, every 10 s: retries that came due, missed
wake-ups). Several may run at once on different workers: the claims share the rows."""

from __future__ import annotations

import logging

from db import pool, settings
from jobs.notifications.dispatch import Backoff, dispatch_due
from workers import actor

logger = logging.getLogger("skyport.notifications")


@actor(queue_name="notifications", max_retries=3, min_backoff_s=1, time_limit=10 * 60_000)
def dispatch_notifications() -> None:
    """Deliver due notifications until none is due or the time budget is spent."""
    cfg = settings.get()
    with pool.connection() as conn:
        stats = dispatch_due(
            conn,
            batch=cfg.notify_batch,
            lease_s=cfg.notify_lease_s,
            time_budget_s=cfg.notify_time_budget_s,
            backoff=Backoff(cfg.notify_backoff_base_s, cfg.notify_backoff_max_s),
        )
    if stats.claimed or stats.reaped:
        logger.info("notifications dispatched: %s", stats)
