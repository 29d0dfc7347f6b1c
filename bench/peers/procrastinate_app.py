"""procrastinate for the peers bench: an App on BENCH_PEER_DATABASE_URL with one async task doing
the peers' write through the App's own connection pool.

    BENCH_PEER_DATABASE_URL=... procrastinate --app=bench.peers.procrastinate_app.app worker [--concurrency N]

BENCH_PROCRASTINATE_POOL_MAX sets the pool's max_size (unset: psycopg_pool's default, 4
connections, which the fetch, the finish, the LISTEN and the tasks share).
"""

from __future__ import annotations

import os
from typing import Any

import procrastinate

from bench.peers.write import BENCH_WRITE_INSERT, database_url

# The environment variable for the pool's max_size (the tuned setting).
POOL_MAX_ENV = "BENCH_PROCRASTINATE_POOL_MAX"


def _pool_args() -> dict[str, Any]:
    size = os.environ.get(POOL_MAX_ENV)
    return {"min_size": min(4, int(size)), "max_size": int(size)} if size else {}


app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=database_url(), **_pool_args()))


@app.task(name="bench_write", queue="default")
async def bench_write(n: int) -> None:
    """One row into bench_writes."""
    await app.connector.execute_query_async(BENCH_WRITE_INSERT, n=n)
