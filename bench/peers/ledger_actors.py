"""The ledger path's actor for the peers bench (loaded with SKYPORT_EXTRA_MODULES): the peers'
write on a connection of Skyport's pool, as a job of `jobs/` would do it. The bench writes to
the ledger's own database, so DATABASE_URL is the database written to."""

from __future__ import annotations

from bench.peers.write import BENCH_WRITE_INSERT
from db import pool
from workers import actor


@actor(queue_name="default")
def bench_write(n: int) -> None:
    """One row into bench_writes."""
    with pool.connection() as conn:
        conn.execute(BENCH_WRITE_INSERT, {"n": n})
