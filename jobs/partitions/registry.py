"""The registry of partitioned tables: what to partition, by which key and interval, how far ahead,
how long to keep. Defaults here; `SKYPORT_MAINTENANCE_FILE` (`[partitions.<parent>]`) changes an
entry or adds a table without a code change. Validated at load, errors name the entry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import date
from enum import StrEnum
from typing import Any

import config
from jobs.maintenance_file import MaintenanceConfigError, check_keys, read_section

# Intervals created ahead of the current one unless an entry says otherwise.
DEFAULT_PREMAKE = 3
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


class Interval(StrEnum):
    DAY = "day"
    MONTH = "month"
    YEAR = "year"


def interval_start(interval: Interval, day: date) -> date:
    """The first day of the interval holding `day`."""
    if interval is Interval.DAY:
        return day
    if interval is Interval.MONTH:
        return day.replace(day=1)
    return day.replace(month=1, day=1)


def add_intervals(interval: Interval, start: date, count: int) -> date:
    """`start` (an interval's first day) moved by `count` intervals (negative: back)."""
    if interval is Interval.DAY:
        return date.fromordinal(start.toordinal() + count)
    if interval is Interval.MONTH:
        index = start.year * 12 + start.month - 1 + count
        return date(index // 12, index % 12 + 1, 1)
    return date(start.year + count, 1, 1)


def partition_name(parent: str, interval: Interval, start: date) -> str:
    """`<parent>_<yyyy>` (year), `<parent>_<yyyy>_<mm>` (month), `<parent>_<yyyy>_<mm>_<dd>` (day)."""
    suffix = {Interval.DAY: "%Y_%m_%d", Interval.MONTH: "%Y_%m", Interval.YEAR: "%Y"}[interval]
    return f"{parent}_{start.strftime(suffix)}"


@dataclass(frozen=True)
class PartitionedTable:
    # The partitioned parent table (PARTITION BY RANGE on `key`).
    parent: str
    # The partition key column (timestamp, timestamptz or date).
    key: str
    interval: Interval = Interval.MONTH
    # Intervals created ahead of the current one.
    premake: int = DEFAULT_PREMAKE
    # Intervals kept before the current one (older partitions go); None keeps everything.
    retention: int | None = None
    # Retention only detaches expired partitions (to archive them), never drops them.
    archive: bool = False
    enabled: bool = True

    def range_for(self, start: date) -> tuple[date, date]:
        return start, add_intervals(self.interval, start, 1)


# The registry. A table added here (or in the maintenance file) is maintained from then on.
DEFAULT_TABLES: tuple[PartitionedTable, ...] = (
    PartitionedTable("shipment_tracking_events", "event_timestamp", retention=24),
    PartitionedTable("audit_log", "created_at"),
)

_FIELDS = {"key", "interval", "premake", "retention", "archive", "enabled"}


def load_tables(
    path: str | None = None, base: tuple[PartitionedTable, ...] = DEFAULT_TABLES
) -> list[PartitionedTable]:
    """The registry with the maintenance file's changes (default: SKYPORT_MAINTENANCE_FILE)."""
    path = config.get().maintenance.file if path is None else path
    entries = {t.parent: t for t in base}
    for parent, changes in read_section(path, "partitions").items():
        entries[parent] = _apply(entries.get(parent), parent, changes, path or "")
    tables = list(entries.values())
    for table in tables:
        validate(table)
    return tables


def _apply(
    table: PartitionedTable | None, parent: str, changes: dict[str, Any], path: str
) -> PartitionedTable:
    check_keys("partitions", parent, changes, _FIELDS, path)
    where = f"partitions entry {parent!r} in {path}"
    if table is None:
        if "key" not in changes:
            raise MaintenanceConfigError(f"{where}: a new table needs its partition `key`")
        table = PartitionedTable(parent, str(changes["key"]))
    values: dict[str, Any] = {}
    for field_name, value in changes.items():
        if field_name == "interval":
            try:
                value = Interval(str(value).lower())
            except ValueError:
                raise MaintenanceConfigError(
                    f"{where}: interval must be day, month or year, got {value!r}"
                ) from None
        elif field_name in ("premake", "retention"):
            if field_name == "retention" and (value in (0, "none", "") or value is False):
                value = None
            elif not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise MaintenanceConfigError(
                    f"{where}: {field_name} must be a whole number >= 0, got {value!r}"
                )
        elif field_name in ("archive", "enabled") and not isinstance(value, bool):
            raise MaintenanceConfigError(f"{where}: {field_name} must be true or false, got {value!r}")
        values[field_name] = value
    return replace(table, **values)


def validate(table: PartitionedTable) -> None:
    where = f"partitions entry {table.parent!r}"
    for what, name in (("table", table.parent), ("key", table.key)):
        if not _IDENTIFIER.match(name):
            raise MaintenanceConfigError(f"{where}: {what} {name!r} is not a plain lower-case identifier")
    if not isinstance(table.interval, Interval):
        raise MaintenanceConfigError(f"{where}: interval must be day, month or year")
    if table.premake < 1:
        raise MaintenanceConfigError(f"{where}: premake must be at least 1 (the next interval)")
    if table.retention is not None and table.retention < 1:
        raise MaintenanceConfigError(f"{where}: retention must be at least 1 interval (or none)")
