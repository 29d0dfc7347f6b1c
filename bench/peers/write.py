"""The job of the peers bench: one small PostgreSQL write, the same for every system.

Each system's job inserts one row, its job number, into `bench_writes` in that system's own
database (BENCH_PEER_DATABASE_URL in the workers' environment). The bench then checks that
every number was written exactly once. Nothing of Skyport is imported here: the bare Dramatiq,
procrastinate and pgqueuer workers load only their own library and this module.
"""

from __future__ import annotations

import os
import threading

import psycopg

# The environment variable naming the database a system's workers write to.
DATABASE_URL_ENV = "BENCH_PEER_DATABASE_URL"

# -- bench_writes_create -- the table the jobs write to.
BENCH_WRITES_CREATE = "CREATE TABLE bench_writes (id bigserial PRIMARY KEY, n integer NOT NULL)"
# -- bench_write_insert -- one job's write (psycopg placeholders; asyncpg's spelling below).
BENCH_WRITE_INSERT = "INSERT INTO bench_writes (n) VALUES (%(n)s)"
BENCH_WRITE_INSERT_ASYNCPG = "INSERT INTO bench_writes (n) VALUES ($1)"
# -- bench_writes_count -- rows written, and how many different job numbers they hold.
BENCH_WRITES_COUNT = "SELECT count(*), count(DISTINCT n) FROM bench_writes"

_local = threading.local()


def database_url() -> str:
    return os.environ[DATABASE_URL_ENV]


def write_sync(n: int) -> None:
    """The write on this thread's own autocommit connection (a worker thread keeps it)."""
    conn = getattr(_local, "conn", None)
    if conn is None or conn.closed:
        conn = _local.conn = psycopg.connect(database_url(), autocommit=True)
    conn.execute(BENCH_WRITE_INSERT, {"n": n})
