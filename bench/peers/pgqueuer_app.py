"""pgqueuer for the peers bench: a QueueManager on one asyncpg connection (as `pgq run`'s own
factory makes it) with one entrypoint doing the peers' write through an asyncpg pool handed to
the jobs as a shared resource (pgqueuer's documented way to share a pool).

    BENCH_PEER_DATABASE_URL=... python -m bench.peers.pgqueuer_app [--batch-size N]

runs it with `pgqueuer.run`, which is what `pgq run` calls ("as pgq run does, without the CLI"):
`pgq run` of pgqueuer 1.6.0 stops at start-up in its logging set-up (AttributeError: 'str'
object has no attribute 'name', for any --log-level). The defaults are the same: batch size 10,
dequeue timeout 30 s, heartbeat timeout 30 s, no limit on concurrent tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.models import Context

from bench.peers.write import BENCH_WRITE_INSERT_ASYNCPG, database_url

ENTRYPOINT = "bench_write"
# `pgq run --batch-size`'s default.
DEFAULT_BATCH_SIZE = 10


@asynccontextmanager
async def create_manager() -> AsyncIterator[QueueManager]:
    connection = await asyncpg.connect(database_url())
    pool = await asyncpg.create_pool(database_url())  # asyncpg's defaults: 10 connections
    manager = QueueManager(Queries(AsyncpgDriver(connection)), resources={"pool": pool})

    @manager.entrypoint(ENTRYPOINT)
    async def bench_write(job: Job, context: Context) -> None:
        """One row into bench_writes; the payload is the job number."""
        async with context.resources["pool"].acquire() as conn:  # type: ignore[attr-defined]
            await conn.execute(BENCH_WRITE_INSERT_ASYNCPG, int(job.payload or b"0"))

    try:
        yield manager
    finally:
        await pool.close()
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="a pgqueuer worker for the peers bench")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(pgqueuer.run(create_manager, batch_size=args.batch_size))


if __name__ == "__main__":
    main()
