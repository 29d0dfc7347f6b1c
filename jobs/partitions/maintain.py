"""Keep partitions ahead of time (`ensure_partitions`) and drop or detach expired ones
(`apply_retention`), for the tables of the registry only.

Every function takes `today` (a pinned clock for tests; default: the database's date in UTC) and an
autocommit connection. DDL on one table runs under the table's advisory lock (two workers never
race on it), held by a transaction of its own on another pooled connection for as long as the
DDL's transactions run (db/locks.py: it holds behind a transaction pooler too), and with
`lock_timeout` (DDL never queues behind a long transaction: it gives up, the caller retries
later). When everything exists, ensuring is two catalog reads per table and no lock.

Nothing here sets anything for the session: each setting is SET LOCAL in the transaction of the
DDL it bounds. DETACH PARTITION ... CONCURRENTLY cannot run in a transaction, so it runs on a
session connection of its own (`session_url`: DATABASE_DIRECT_URL, or DATABASE_URL without a
transaction pooler), with its lock_timeout set for that session alone; without one it detaches in
a transaction (the parent's ACCESS EXCLUSIVE lock for a moment, under lock_timeout).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date

import psycopg
from psycopg import errors, sql

import config
from db import locks, pool
from jobs.partitions import catalog
from jobs.partitions.catalog import NotMaintainable, Partition
from jobs.partitions.registry import (
    PartitionedTable,
    add_intervals,
    interval_start,
    load_tables,
    partition_name,
)

logger = logging.getLogger("skyport.partitions")

# First key of the two-int advisory locks taken on a table's DDL (the second: hashtext(parent)).
ADVISORY_LOCK_CLASS = 0x5B0A  # "skyport partitions"


@dataclass
class TableResult:
    parent: str
    created: list[str] = field(default_factory=list)
    moved_rows: dict[str, int] = field(default_factory=dict)
    detached: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    # "ok", "busy" (another worker holds the table's lock), "lock_timeout" (retry later), "error".
    outcome: str = "ok"
    error: str | None = None


@contextmanager
def table_lock(parent: str) -> Iterator[bool]:
    """One worker at a time does DDL on a table: yields True when this process got the table's
    lock (held until the block ends, across the DDL's transactions; db/locks.py)."""
    with locks.try_lock(ADVISORY_LOCK_CLASS, parent) as got:
        yield got


def wanted_ranges(table: PartitionedTable, today: date) -> list[tuple[date, date]]:
    """The current interval and `premake` intervals after it."""
    current = interval_start(table.interval, today)
    return [table.range_for(add_intervals(table.interval, current, i)) for i in range(table.premake + 1)]


def missing_ranges(
    table: PartitionedTable, partitions: list[Partition], today: date
) -> list[tuple[date, date]]:
    """Wanted ranges no partition covers; a range only partly covered is an error (names both)."""
    ranged = [p for p in partitions if not p.is_default]
    missing = []
    for start, end in wanted_ranges(table, today):
        lo, hi = catalog.as_datetime(start), catalog.as_datetime(end)
        if any(p.covers(lo, hi) for p in ranged):
            continue
        overlapping = [p.name for p in ranged if p.overlaps(lo, hi)]
        if overlapping:
            raise NotMaintainable(
                f"partitions entry {table.parent!r}: {start}..{end} is partly covered by {overlapping}; "
                "the partitions do not follow the registry's interval"
            )
        missing.append((start, end))
    return missing


def ensure_partitions(
    conn: psycopg.Connection,
    tables: list[PartitionedTable] | None = None,
    today: date | None = None,
    lock_timeout_s: float | None = None,
) -> list[TableResult]:
    """For every enabled registered table: partitions from the current interval through the premake
    horizon exist afterwards (unless the result says busy / lock_timeout / error)."""
    tables = load_tables() if tables is None else tables
    today = catalog.database_today(conn) if today is None else today
    lock_timeout_s = (
        config.get().maintenance.partition_lock_timeout_s if lock_timeout_s is None else lock_timeout_s
    )
    return [
        _guarded(table, _ensure_table, conn, table, today, lock_timeout_s)
        for table in tables
        if table.enabled
    ]


def _guarded(table: PartitionedTable, fn, *args) -> TableResult:
    try:
        return fn(*args)
    except errors.LockNotAvailable as exc:
        logger.warning("partitions %s: lock timeout, will retry later (%s)", table.parent, exc)
        return TableResult(table.parent, outcome="lock_timeout", error=str(exc).strip())
    except (NotMaintainable, psycopg.DatabaseError) as exc:
        if isinstance(exc, psycopg.OperationalError):
            raise  # the database is unreachable: the whole job retries
        logger.error("partitions %s: %s", table.parent, exc)
        return TableResult(table.parent, outcome="error", error=str(exc).strip())


def _ensure_table(
    conn: psycopg.Connection, table: PartitionedTable, today: date, lock_timeout_s: float
) -> TableResult:
    result = TableResult(table.parent)
    if not missing_ranges(table, catalog.list_partitions(conn, table), today):
        return result  # the common case: a check, no lock, no DDL
    with table_lock(table.parent) as got:
        if not got:
            logger.info("partitions %s: another worker is creating partitions", table.parent)
            result.outcome = "busy"
            return result
        partitions = catalog.list_partitions(conn, table)  # again, under the lock
        default = next((p for p in partitions if p.is_default), None)
        for start, end in missing_ranges(table, partitions, today):
            name = partition_name(table.parent, table.interval, start)
            moved = _create_partition(conn, table, name, start, end, default, lock_timeout_s)
            result.created.append(name)
            if moved:
                result.moved_rows[name] = moved
            logger.info(
                "partitions %s: created %s FOR VALUES FROM (%s) TO (%s)%s",
                table.parent,
                name,
                start,
                end,
                f", moved {moved} rows from {default.name}" if moved else "",
            )
    return result


# -- partition_create -- indexes, constraints and row triggers come from the parent.
PARTITION_CREATE = (
    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF {parent} FOR VALUES FROM ({start}) TO ({end})"
)
# -- partition_default_has_rows -- does the DEFAULT partition hold rows of the new range?
PARTITION_DEFAULT_HAS_ROWS = (
    "SELECT EXISTS (SELECT 1 FROM {default} WHERE {key} >= {start} AND {key} < {end})"
)
# -- partition_default_take -- take those rows out of the DEFAULT partition (row triggers fire).
PARTITION_DEFAULT_TAKE = """
CREATE TEMP TABLE skyport_partition_move ON COMMIT DROP AS SELECT {columns} FROM {parent} WITH NO DATA;
WITH moved AS (DELETE FROM {default} WHERE {key} >= {start} AND {key} < {end} RETURNING {columns})
INSERT INTO skyport_partition_move SELECT {columns} FROM moved
"""
# -- partition_default_put -- and into the new partition, in the same transaction.
PARTITION_DEFAULT_PUT = (
    "INSERT INTO {name} ({columns}) OVERRIDING SYSTEM VALUE SELECT {columns} FROM skyport_partition_move"
)


def _create_partition(
    conn: psycopg.Connection,
    table: PartitionedTable,
    name: str,
    start: date,
    end: date,
    default: Partition | None,
    lock_timeout_s: float,
) -> int:
    """Create one partition in its own transaction; rows of its range waiting in the DEFAULT
    partition move into it (CREATE would fail otherwise). Returns the rows moved."""
    names = {
        "name": sql.Identifier(name),
        "parent": sql.Identifier(table.parent),
        "key": sql.Identifier(table.key),
        "start": sql.Literal(start.isoformat()),
        "end": sql.Literal(end.isoformat()),
    }
    moved = 0
    with conn.transaction():
        conn.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout_s * 1000)}ms"))
        )
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        if default is not None:
            names["default"] = sql.Identifier(default.name)
            has_rows = conn.execute(sql.SQL(PARTITION_DEFAULT_HAS_ROWS).format(**names)).fetchone()[0]
            if has_rows:
                columns = sql.SQL(", ").join(
                    sql.Identifier(c) for c in catalog.parent_columns(conn, table.parent)
                )
                conn.execute(sql.SQL(PARTITION_DEFAULT_TAKE).format(columns=columns, **names))
                conn.execute(sql.SQL(PARTITION_CREATE).format(**names))
                moved = conn.execute(sql.SQL(PARTITION_DEFAULT_PUT).format(columns=columns, **names)).rowcount
                _check_is_partition(conn, table.parent, name)
                return moved
        conn.execute(sql.SQL(PARTITION_CREATE).format(**names))
        _check_is_partition(conn, table.parent, name)
    return moved


# -- partition_is_child -- IF NOT EXISTS also skips a same-named table that is not our partition.
PARTITION_IS_CHILD = """
SELECT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s) AND inhparent = to_regclass(%s))
"""


def _check_is_partition(conn: psycopg.Connection, parent: str, name: str) -> None:
    if not conn.execute(PARTITION_IS_CHILD, (name, parent)).fetchone()[0]:
        raise NotMaintainable(
            f"partitions entry {parent!r}: a table {name!r} exists and is not a partition of {parent} "
            "(an archived partition? rename it)"
        )


def expired_partitions(table: PartitionedTable, partitions: list[Partition], today: date) -> list[Partition]:
    """Partitions whose whole range lies before the retention window (never the DEFAULT one, never
    an unbounded one): the window is the current interval and `retention` intervals before it."""
    if table.retention is None:
        return []
    cutoff = catalog.as_datetime(
        add_intervals(table.interval, interval_start(table.interval, today), -table.retention)
    )
    return sorted(
        (p for p in partitions if not p.is_default and p.upper is not None and p.upper <= cutoff),
        key=lambda p: p.upper,
    )


def apply_retention(
    conn: psycopg.Connection,
    tables: list[PartitionedTable] | None = None,
    today: date | None = None,
    lock_timeout_s: float | None = None,
) -> list[TableResult]:
    """Detach (CONCURRENTLY when the table has no DEFAULT partition) and drop, or only detach when
    the entry archives, every expired partition of the registered tables with a retention."""
    tables = load_tables() if tables is None else tables
    today = catalog.database_today(conn) if today is None else today
    lock_timeout_s = (
        config.get().maintenance.partition_lock_timeout_s if lock_timeout_s is None else lock_timeout_s
    )
    return [
        _guarded(table, _retain_table, conn, table, today, lock_timeout_s)
        for table in tables
        if table.enabled and table.retention is not None
    ]


def _retain_table(
    conn: psycopg.Connection, table: PartitionedTable, today: date, lock_timeout_s: float
) -> TableResult:
    result = TableResult(table.parent)
    if not expired_partitions(table, catalog.list_partitions(conn, table), today):
        return result
    with table_lock(table.parent) as got:
        if not got:
            result.outcome = "busy"
            return result
        partitions = catalog.list_partitions(conn, table)
        has_default = any(p.is_default for p in partitions)
        for part in expired_partitions(table, partitions, today):
            _detach(conn, table.parent, part, concurrently=not has_default, lock_timeout_s=lock_timeout_s)
            result.detached.append(part.name)
            if table.archive:
                logger.info("partitions %s: detached %s (archived, not dropped)", table.parent, part.name)
                continue
            with conn.transaction():
                _set_lock_timeout(conn, lock_timeout_s, local=True)
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(part.name)))
            result.dropped.append(part.name)
            logger.info(
                "partitions %s: dropped %s (older than %d intervals)",
                table.parent,
                part.name,
                table.retention,
            )
    return result


def _detach(
    conn: psycopg.Connection, parent: str, part: Partition, *, concurrently: bool, lock_timeout_s: float
) -> None:
    names = {"parent": sql.Identifier(parent), "part": sql.Identifier(part.name)}
    session_url = config.get().database.session_url
    if part.detach_pending:  # an earlier DETACH ... CONCURRENTLY was interrupted: finish it
        statement = "ALTER TABLE {parent} DETACH PARTITION {part} FINALIZE"
    elif concurrently and session_url is not None:  # readers and writers of the parent never wait
        statement = "ALTER TABLE {parent} DETACH PARTITION {part} CONCURRENTLY"
        # Cannot run in a transaction block: on a session of its own, whose setting dies with it.
        with pool.connect(session_url, autocommit=True) as session:
            _set_lock_timeout(session, lock_timeout_s, local=False)
            session.execute(sql.SQL(statement).format(**names))
        return
    else:  # CONCURRENTLY is refused with a DEFAULT partition, and needs a session connection
        statement = "ALTER TABLE {parent} DETACH PARTITION {part}"
    with conn.transaction():
        _set_lock_timeout(conn, lock_timeout_s, local=True)
        conn.execute(sql.SQL(statement).format(**names))


def _set_lock_timeout(conn: psycopg.Connection, seconds: float, *, local: bool) -> None:
    scope = "SET LOCAL" if local else "SET"
    conn.execute(sql.SQL(scope + " lock_timeout = {}").format(sql.Literal(f"{int(seconds * 1000)}ms")))
