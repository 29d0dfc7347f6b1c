"""What PostgreSQL says about a partitioned table: its key, its partitions and their bounds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime

import psycopg

from jobs.partitions.registry import PartitionedTable


class NotMaintainable(Exception):
    """The registered table is missing or not range-partitioned on its key; names the entry."""


@dataclass(frozen=True)
class Partition:
    name: str
    # Range bounds as naive UTC datetimes; None for MINVALUE / MAXVALUE.
    lower: datetime | None
    upper: datetime | None
    is_default: bool = False
    detach_pending: bool = False

    def covers(self, start: datetime, end: datetime) -> bool:
        return (self.lower is None or self.lower <= start) and (self.upper is None or end <= self.upper)

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return (self.lower is None or self.lower < end) and (self.upper is None or start < self.upper)


# -- partition_parent_info -- the parent's strategy and single key column (pg_partitioned_table).
PARTITION_PARENT_INFO = """
SELECT pt.partstrat, pt.partnatts, a.attname
  FROM pg_partitioned_table pt
  LEFT JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
 WHERE pt.partrelid = to_regclass(%s)
"""

# -- partition_list -- the partitions of a parent and their bounds, in UTC (pg_inherits_parent_index).
PARTITION_LIST = """
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), i.inhdetachpending
  FROM pg_inherits i
  JOIN pg_class c ON c.oid = i.inhrelid
 WHERE i.inhparent = to_regclass(%s)
"""

# -- partition_columns -- the parent's stored columns, in order (to move rows column by column).
PARTITION_COLUMNS = """
SELECT attname FROM pg_attribute
 WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
 ORDER BY attnum
"""

_RANGE = re.compile(r"^FOR VALUES FROM \((.+)\) TO \((.+)\)$")


def database_today(conn: psycopg.Connection) -> date:
    """The database's current date in UTC (the default clock of every function here)."""
    return conn.execute("SELECT (now() AT TIME ZONE 'UTC')::date").fetchone()[0]


def check_parent(conn: psycopg.Connection, table: PartitionedTable) -> None:
    row = conn.execute(PARTITION_PARENT_INFO, (table.parent,)).fetchone()
    where = f"partitions entry {table.parent!r}"
    if row is None:
        raise NotMaintainable(f"{where}: no partitioned table {table.parent!r} in the database")
    strategy, key_count, key = row
    if strategy != "r" or key_count != 1:
        raise NotMaintainable(f"{where}: {table.parent} is not partitioned by RANGE on one column")
    if key != table.key:
        raise NotMaintainable(
            f"{where}: {table.parent} is partitioned on {key!r}, the registry says {table.key!r}"
        )


def list_partitions(conn: psycopg.Connection, table: PartitionedTable) -> list[Partition]:
    """The parent's partitions (checks the parent first). Bounds are read with TimeZone UTC."""
    check_parent(conn, table)
    # Bounds of a timestamptz key print in the session's time zone: read them in UTC, set for this
    # transaction only (never for the session: behind a transaction pooler a session setting
    # stays on a server connection other clients use). Inside a caller's transaction (the
    # dashboard's) this is a savepoint, which a SET LOCAL outlives: the caller's setting goes back.
    with conn.transaction():
        previous = conn.execute("SELECT current_setting('TimeZone')").fetchone()[0]
        conn.execute("SELECT set_config('TimeZone', 'UTC', true)")
        rows = conn.execute(PARTITION_LIST, (table.parent,)).fetchall()
        conn.execute("SELECT set_config('TimeZone', %s, true)", (previous,))
    return [_partition(name, bound, pending) for name, bound, pending in rows]


def parent_columns(conn: psycopg.Connection, parent: str) -> list[str]:
    return [name for (name,) in conn.execute(PARTITION_COLUMNS, (parent,)).fetchall()]


def _partition(name: str, bound: str, detach_pending: bool) -> Partition:
    if bound == "DEFAULT":
        return Partition(name, None, None, is_default=True, detach_pending=detach_pending)
    match = _RANGE.match(bound)
    if match is None:
        raise NotMaintainable(f"partition {name}: unexpected bound {bound!r} (only single-column ranges)")
    return Partition(name, _value(match.group(1)), _value(match.group(2)), detach_pending=detach_pending)


def _value(text: str) -> datetime | None:
    text = text.strip()
    if text in ("MINVALUE", "MAXVALUE"):
        return None
    parsed = datetime.fromisoformat(text.strip("'"))
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def as_datetime(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)
