"""How far ahead each registered table is covered by partitions (for ops: CLI, dashboard, alerts).

`coverage(conn)` is a plain read for the dashboard; `report(conn)` also logs and sends a Sentry
message for every table below the threshold (the ensure job calls it after each run).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import psycopg
import sentry_sdk

import config
from jobs.partitions import catalog
from jobs.partitions.catalog import NotMaintainable
from jobs.partitions.registry import PartitionedTable, add_intervals, interval_start, load_tables

logger = logging.getLogger("skyport.partitions")

# Intervals looked at beyond the current one (more ahead than this is reported as this).
MAX_AHEAD_SCANNED = 1000


@dataclass(frozen=True)
class Coverage:
    parent: str
    interval: str
    today: date
    # First day of the current interval.
    current_start: date
    # The last day covered without a gap from the current interval on (None: the current one is not).
    last_covered: date | None
    # Whole intervals covered after the current one (-1: the current interval has no partition).
    ahead: int
    premake: int
    partitions: int
    has_default: bool
    # "ok", "warning" (fewer than the threshold ahead), "critical" (current interval uncovered), "error".
    status: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in asdict(self).items()}


def coverage(
    conn: psycopg.Connection,
    tables: list[PartitionedTable] | None = None,
    today: date | None = None,
    warn_ahead: int | None = None,
) -> list[Coverage]:
    """Per enabled registered table: last covered date, intervals ahead and a status."""
    tables = load_tables() if tables is None else tables
    today = catalog.database_today(conn) if today is None else today
    warn_ahead = config.get().maintenance.partition_warn_ahead if warn_ahead is None else warn_ahead
    return [table_coverage(conn, t, today, warn_ahead) for t in tables if t.enabled]


def table_coverage(
    conn: psycopg.Connection, table: PartitionedTable, today: date, warn_ahead: int
) -> Coverage:
    current = interval_start(table.interval, today)
    try:
        partitions = catalog.list_partitions(conn, table)
    except NotMaintainable as exc:
        return Coverage(
            table.parent,
            table.interval.value,
            today,
            current,
            None,
            -1,
            table.premake,
            0,
            False,
            "error",
            str(exc),
        )
    ranged = [p for p in partitions if not p.is_default and not p.detach_pending]
    has_default = any(p.is_default for p in partitions)
    covered_until = _covered_until(table, current, ranged)
    ahead = -1
    while ahead < MAX_AHEAD_SCANNED and add_intervals(table.interval, current, ahead + 2) <= covered_until:
        ahead += 1
    last_covered = covered_until - timedelta(days=1) if covered_until > current else None
    status, message = _status(table, current, ahead, warn_ahead, has_default)
    return Coverage(
        table.parent,
        table.interval.value,
        today,
        current,
        last_covered,
        ahead,
        table.premake,
        len(ranged),
        has_default,
        status,
        message,
    )


def _covered_until(table: PartitionedTable, current: date, ranged: list[catalog.Partition]) -> date:
    """The first day after what `ranged` covers without a gap from `current` on (`current` itself when
    nothing covers it)."""
    # Walk from the current interval's start through contiguous partitions.
    position = catalog.as_datetime(current)
    for _ in range(len(ranged) + 1):
        holder = next((p for p in ranged if p.covers(position, position) and p.upper != position), None)
        if holder is None or holder.upper is None:
            if holder is not None:  # unbounded above: covered "forever"
                position = catalog.as_datetime(add_intervals(table.interval, current, MAX_AHEAD_SCANNED + 1))
            break
        position = holder.upper
    return position.date() if position.time() == position.time().min else position.date() + timedelta(1)


def _status(
    table: PartitionedTable, current: date, ahead: int, warn_ahead: int, has_default: bool
) -> tuple[str, str]:
    """The status of a table `ahead` whole intervals covered after the current one, and its message."""
    if ahead < 0:
        return "critical", f"no partition for the current {table.interval.value} starting {current}" + (
            " (rows go to the DEFAULT partition)" if has_default else " (inserts fail)"
        )
    if ahead < warn_ahead:
        return "warning", f"only {ahead} {table.interval.value}(s) ahead covered (threshold {warn_ahead})"
    return "ok", f"{ahead} {table.interval.value}(s) ahead covered"


def report(conn: psycopg.Connection, **kwargs: Any) -> list[Coverage]:
    """`coverage`, plus a log line and a Sentry message for every table that is not ok."""
    result = coverage(conn, **kwargs)
    for item in result:
        if item.status == "ok":
            logger.info("partitions %s: %s (last covered %s)", item.parent, item.message, item.last_covered)
            continue
        logger.warning("partitions %s: %s: %s", item.parent, item.status, item.message)
        sentry_sdk.capture_message(
            f"partition coverage {item.status}: {item.parent}: {item.message}",
            level="error" if item.status in ("critical", "error") else "warning",
        )
    return result
