"""Actors that keep the ledger healthy; the scheduler fires them (their entries: jobs/registry.py)."""

from __future__ import annotations

import logging

import config
from db import pool
from workers import actor, flow, ledger, lifeline, stats

logger = logging.getLogger("skyport.maintenance")


@actor(queue_name="maintenance", max_retries=0, time_limit=60_000)
def ledger_lifeline() -> None:
    """Recover jobs of dead workers, republish queued jobs the broker lost."""
    with pool.connection() as conn:
        counts = lifeline.maintenance_pass(conn)
    logger.info("lifeline: %s", ", ".join(f"{n} {what}" for what, n in counts.items()))


# Priority 8 (0 first, 9 last): a nightly bulk delete that nothing waits for.
@actor(queue_name="maintenance", max_retries=2, time_limit=30 * 60_000, priority=8)
def prune_jobs() -> None:
    """Delete finished jobs past their retention (SKYPORT_KEEP_SUCCEEDED_DAYS / _DEAD_DAYS)."""
    cfg = config.get()
    with pool.connection() as conn:
        pruned = ledger.prune_finished(conn, cfg.worker.keep_succeeded_days, cfg.worker.keep_dead_days)
        rates = flow.prune_rates(conn)
    logger.info("pruned %d finished jobs, %d idle rate schedules", pruned, rates)


@actor(queue_name="maintenance", max_retries=0, time_limit=5 * 60_000)
def ledger_stats() -> None:
    """Keep the console's rollup: the last minutes' attempts, queue depths, jobs per state."""
    with pool.connection() as conn:
        written = stats.roll_up(conn)
    logger.info(
        "stats: buckets written: %s",
        ", ".join(f"{n} of {int(grain) // 60} min" for grain, n in written.items()),
    )
