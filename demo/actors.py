"""Demo actors, loaded by the demo's worker (SKYPORT_EXTRA_MODULES=demo.actors):
work that takes a moment, and work that fails a given number of times before it succeeds.

The failures are scripted by attempt number, so a job that ends dead succeeds when ops retry it
from the console (the retry is one attempt more than the script fails)."""

from __future__ import annotations

import time

from dramatiq.middleware import CurrentMessage

from db import pool
from workers import PermanentError, actor


def _attempt() -> int:
    """This run's attempt number, from the ledger."""
    message = CurrentMessage.get_current_message()
    job_id = message.options.get("job_id") if message else None
    if job_id is None:
        return 1
    with pool.connection() as conn:
        row = conn.execute("SELECT attempts FROM jobs WHERE id = %s", (job_id,)).fetchone()
    return row[0] if row else 1


@actor(queue_name="demo", max_retries=0)
def demo_work(order: int, seconds: float = 0.2) -> None:
    """A job that takes `seconds`."""
    time.sleep(seconds)


# Attempts of demo_flaky: a job scripted to fail this many times ends dead, and its retry succeeds.
DEMO_FLAKY_ATTEMPTS = 4


@actor(queue_name="demo", max_retries=DEMO_FLAKY_ATTEMPTS - 1, min_backoff_s=2, max_backoff_s=10)
def demo_flaky(order: int, failures: int) -> None:
    """Fails its first `failures` attempts (retries with backoff, dead once they are used up)."""
    attempt = _attempt()
    if attempt <= failures:
        raise ConnectionError(f"demo carrier API timed out for order {order} (attempt {attempt})")


@actor(queue_name="demo", max_retries=5)
def demo_reject(order: int) -> None:
    """Bad input: dead at once, the reason visible; a retry (ops fixed the order) succeeds."""
    if _attempt() == 1:
        raise PermanentError(f"order {order}: weight must be positive")
