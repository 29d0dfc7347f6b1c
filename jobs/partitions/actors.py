"""The partition actor (hourly: jobs/partitions/family.py) and the scheduler's start-up hook."""

from __future__ import annotations

import logging

from db import pool
from jobs.family import StartupError
from jobs.maintenance_file import MaintenanceConfigError
from jobs.matviews.registry import load_views
from jobs.partitions import maintain, status
from jobs.partitions.registry import load_tables
from workers import PermanentError, actor, enqueue

logger = logging.getLogger("skyport.partitions")

# Dedup key of the start-up run enqueued when the scheduler cannot do it itself.
STARTUP_DEDUP_KEY = "partitions:startup"


class PartitionsBusy(Exception):
    """Some table's DDL hit lock_timeout (a long transaction holds the table): retried later."""


def run_maintenance() -> list[maintain.TableResult]:
    """Ensure partitions ahead, apply retention, report coverage (logs, Sentry). Raises
    PartitionsBusy when a table must be retried, PermanentError when a registry entry is wrong."""
    try:
        tables = load_tables()
    except MaintenanceConfigError as exc:
        raise PermanentError(str(exc)) from None
    with pool.connection() as conn:
        results = maintain.ensure_partitions(conn, tables) + maintain.apply_retention(conn, tables)
        status.report(conn, tables=tables)
    timed_out = sorted({r.parent for r in results if r.outcome == "lock_timeout"})
    if timed_out:
        raise PartitionsBusy(f"lock timeout on {', '.join(timed_out)}; retrying later")
    broken = [f"{r.parent}: {r.error}" for r in results if r.outcome == "error"]
    if broken:
        raise PermanentError("; ".join(broken))
    return results


# Priority 2 (0 first, 9 last): partitions must exist before rows arrive for them.
@actor(
    queue_name="maintenance",
    max_retries=8,
    min_backoff_s=30.0,
    max_backoff_s=900.0,
    time_limit=30 * 60_000,
    priority=2,
)
def ensure_partitions() -> None:
    """Partitions from the current interval through the premake horizon; expired ones go."""
    for result in run_maintenance():
        if result.created or result.dropped or result.detached:
            logger.info(
                "partitions %s: created %s, detached %s, dropped %s",
                result.parent,
                result.created,
                result.detached,
                result.dropped,
            )


def ensure_at_startup() -> None:
    """The scheduler's start-up: ensure partitions now, before any tick (a lock timeout or an
    unreachable database hands the work to a worker instead; the scheduler starts anyway). A bad
    maintenance file stops the start-up, naming the entry, like a bad schedule does."""
    try:
        load_tables()
        load_views()
    except MaintenanceConfigError as exc:
        raise StartupError(str(exc)) from None
    try:
        run_maintenance()
        logger.info("partitions ensured at scheduler start-up")
    except Exception as exc:
        logger.warning("partitions at start-up: %s; enqueueing ensure_partitions", exc)
        try:
            enqueue(ensure_partitions, dedup_key=STARTUP_DEDUP_KEY, enqueued_by="scheduler:startup")
        except Exception:
            logger.exception("could not enqueue ensure_partitions at start-up")
