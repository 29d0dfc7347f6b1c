"""The expiry actor; the scheduler fires it every minute (`quotes_expire`)."""

from __future__ import annotations

import logging

from db import pool
from jobs.quotes.expiry import expire_configured
from workers import actor

logger = logging.getLogger("skyport.quotes")


# Priority 3 (0 first, 9 last): customers see expired quotes until it runs.
@actor(queue_name="maintenance", max_retries=3, min_backoff_s=5, time_limit=5 * 60_000, priority=3)
def expire_quotes() -> None:
    """Expire quoted quotes past valid_until, with their notifications and audit rows."""
    with pool.connection() as conn:
        stats = expire_configured(conn)
    if stats.expired:
        logger.info("quotes: %s", stats.summary())
