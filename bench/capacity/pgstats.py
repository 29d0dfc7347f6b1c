"""What PostgreSQL says about a window of work: WAL position, row writes per table (from the
cumulative statistics), commits, WAL syncs, and the size of the ledger's tables.

PostgreSQL 15 backends flush their statistics at the end of a transaction at most once a second,
and an idle backend within about a second of going idle, or 10 s later when the flush met a locked
entry (several backends writing the same table): `settled` reads the counters until they have not
changed for longer than that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import psycopg

# The tables whose row writes and sizes are counted: the ledger's and the write job's.
TABLES = ("jobs", "job_attempts", "workers", "bench_writes")
# The tables a stored job occupies (its row, its attempts, their indexes and TOAST).
STORED = ("jobs", "job_attempts")
COUNTERS = ("ins", "upd", "hot", "del")
# The tables only jobs write to (the workers' heartbeats write `workers` every few seconds).
SETTLING = ("jobs", "job_attempts", "bench_writes")

TABLE_COUNTERS = """
SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
  FROM pg_stat_user_tables WHERE relname = ANY(%s)
"""
DATABASE_COUNTERS = "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s"
WAL_COUNTERS = "SELECT wal_records, wal_fpi, wal_bytes, wal_write, wal_sync FROM pg_stat_wal"
RELATION_SIZES = """
SELECT c.relname, pg_relation_size(c.oid), pg_indexes_size(c.oid), pg_total_relation_size(c.oid)
  FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace
"""


@dataclass
class Counters:
    """Cumulative counters at one moment: per table (ins, upd, hot, del), the database's commits
    and rollbacks, and the server's WAL statistics (server-wide: every database's writes)."""

    tables: dict[str, tuple[int, ...]] = field(default_factory=dict)
    database: tuple[int, ...] = ()
    wal: tuple[int, ...] = ()

    def minus(self, before: Counters) -> Counters:
        return Counters(
            {t: _sub(v, before.tables.get(t, (0,) * len(v))) for t, v in self.tables.items()},
            _sub(self.database, before.database),
            _sub(self.wal, before.wal),
        )


def _sub(a: tuple, b: tuple) -> tuple:
    return tuple(x - y for x, y in zip(a, b, strict=True))


def read_counters(conn: psycopg.Connection, dbname: str) -> Counters:
    conn.execute("SELECT pg_stat_clear_snapshot()")
    tables = {row[0]: tuple(int(x) for x in row[1:]) for row in conn.execute(TABLE_COUNTERS, (list(TABLES),))}
    database = tuple(conn.execute(DATABASE_COUNTERS, (dbname,)).fetchone())
    wal = tuple(int(x) for x in conn.execute(WAL_COUNTERS).fetchone())
    return Counters(tables, database, wal)


def settled(
    conn: psycopg.Connection, dbname: str, *, quiet_s: float, at_least: tuple[str, int, int] | None = None
) -> Counters:
    """The counters once every backend has flushed its statistics: unchanged for `quiet_s` (a
    backend whose flush met a locked entry tries again 10 s later), and, when given (table,
    counter index, minimum), that counter at least at the minimum."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    deadline = time.monotonic() + max(60.0, 4 * quiet_s)
    last, since = read_counters(conn, dbname), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = read_counters(conn, dbname)
        if _steady(now) != _steady(last):
            last, since = now, time.monotonic()
            continue
        enough = at_least is None or now.tables.get(at_least[0], (0,) * 4)[at_least[1]] >= at_least[2]
        if enough and time.monotonic() - since >= quiet_s:
            return now
    raise TimeoutError(f"the statistics did not settle: {last}")


def _steady(c: Counters) -> dict[str, tuple[int, ...]]:
    """The counters that must have settled: not `workers` (heartbeats) nor commits (relay polls)."""
    return {t: v for t, v in c.tables.items() if t in SETTLING}


def wal_lsn(conn: psycopg.Connection) -> str:
    return conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]


def lsn_diff(conn: psycopg.Connection, end: str, start: str) -> int:
    return int(conn.execute("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", (end, start)).fetchone()[0])


@dataclass(frozen=True)
class Sizes:
    """Bytes of each stored table: heap (with TOAST, free space map, visibility map) and indexes."""

    by_table: dict[str, tuple[int, int]]

    def total(self, tables: tuple[str, ...] = STORED) -> int:
        return sum(heap + index for t, (heap, index) in self.by_table.items() if t in tables)

    def part(self, which: int, tables: tuple[str, ...] = STORED) -> int:
        return sum(v[which] for t, v in self.by_table.items() if t in tables)


def sizes(conn: psycopg.Connection) -> Sizes:
    rows = conn.execute(RELATION_SIZES, (list(STORED),)).fetchall()
    return Sizes({name: (total - index, index) for name, _heap, index, total in rows})
