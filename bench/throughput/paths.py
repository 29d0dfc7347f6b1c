"""The two paths the throughput bench compares: (a) bare Dramatiq, (b) Skyport's ledger."""

from __future__ import annotations

import os
import sys
import time
from typing import Protocol

import psycopg
import redis

from bench.support.procs import SKYPORT

QUEUE = "default"

# Finished jobs the ledger holds before the bench starts, as retention keeps them in production.
# They keep the planner's statistics those of a ledger in use: on an empty, vacuumed `jobs` table
# (reltuples = 0) the workers' prepared statements get generic plans that scan whole indexes.
HISTORY_ACTOR = "bench_history"
SEED_HISTORY = """
INSERT INTO jobs (actor, queue, state, attempts, max_attempts, started_at, finished_at, worker_id,
                  enqueued_by)
SELECT %s, 'default', 'succeeded', 1, 1, now(), now(), 'bench', 'bench' FROM generate_series(1, %s)
"""


class BenchPath(Protocol):
    key: str
    label: str
    env: dict[str, str]

    def worker_argv(self, processes: int, threads: int) -> list[str]: ...
    def send(self) -> None: ...
    def remaining(self, jobs: int) -> int: ...
    def progress(self) -> str: ...
    def ready_workers(self, since_epoch_s: float) -> int: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class BarePath:
    """(a) `actor.send` on a plain RedisBroker; a job is done when its message is acknowledged."""

    key = "bare"
    label = "(a) bare"
    # The broker the bare workers load (`python -m dramatiq <this>`).
    BROKER = "bench.throughput.bare_app:broker"

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.env = {"BROKER_URL": redis_url, "BENCH_BARE_NAMESPACE": namespace}
        os.environ.update(self.env)
        from bench.throughput import bare_app

        self.broker = bare_app.broker
        self.actor = bare_app.bench_noop
        self.namespace = namespace
        self.redis = redis.Redis.from_url(redis_url)

    def worker_argv(self, processes: int, threads: int) -> list[str]:
        return [sys.executable, "-m", "dramatiq", self.BROKER, "-p", str(processes), "-t", str(threads)]

    def send(self) -> None:
        self.actor.send()

    def remaining(self, jobs: int) -> int:
        # A message stays in the queue's .msgs hash until it is acknowledged (after it ran).
        return self.redis.hlen(f"{self.namespace}:{QUEUE}.msgs")

    def progress(self) -> str:
        return f"{self.redis.hlen(f'{self.namespace}:{QUEUE}.msgs')} messages not acknowledged"

    def ready_workers(self, since_epoch_s: float) -> int:
        members = self.redis.zrangebyscore(f"{self.namespace}:__heartbeats__", since_epoch_s * 1000, "+inf")
        return sum(1 for m in members if m.decode() != self.broker.broker_id)

    def reset(self) -> None:
        self.broker.flush_all()

    def close(self) -> None:
        self.redis.close()


class LedgerPath:
    """(b) `workers.enqueue` writes a row; the relay in the workers publishes it; the ledger
    middleware moves it to running, then succeeded."""

    key = "ledger"
    label = "(b) ledger"

    def __init__(self, database_url: str, redis_url: str, namespace: str, history: int) -> None:
        self.env = {
            "DATABASE_URL": database_url,
            "BROKER_URL": redis_url,
            "SKYPORT_BROKER_NAMESPACE": namespace,
            "SKYPORT_EXTRA_MODULES": "bench.throughput.ledger_actors",
        }
        os.environ.update(self.env)
        import config

        config.get.cache_clear()
        import workers
        from bench.throughput import ledger_actors

        self.workers = workers
        self.actor = ledger_actors.bench_noop
        self.settings = config.get()
        self.monitor = psycopg.connect(database_url, autocommit=True)
        self.monitor.execute(SEED_HISTORY, (HISTORY_ACTOR, history))
        self.monitor.execute("VACUUM ANALYZE jobs, job_attempts")

    def worker_argv(self, processes: int, threads: int) -> list[str]:
        return [*SKYPORT, "worker", "-p", str(processes), "-t", str(threads)]

    def send(self, dedup_key: str | None = None) -> None:
        self.workers.enqueue(self.actor, dedup_key=dedup_key)

    def send_many(self, count: int) -> None:
        self.workers.enqueue_many([self.workers.JobSpec(self.actor)] * count)

    def _scalar(self, query: str) -> int:
        return self.monitor.execute(query).fetchone()[0]

    def remaining(self, jobs: int) -> int:
        query = "SELECT count(*) FROM jobs WHERE actor = %s AND state = 'succeeded'"
        return jobs - self.monitor.execute(query, (self.actor.actor_name,)).fetchone()[0]

    def progress(self) -> str:
        rows = self.monitor.execute("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY 1").fetchall()
        return ", ".join(f"{state}: {count}" for state, count in rows)

    def ready_workers(self, since_epoch_s: float) -> int:
        return self._scalar("SELECT count(*) FROM workers")

    def lone_job_waits_ms(self, samples: int, gap_s: float) -> list[float]:
        """Jobs enqueued alone, `gap_s` apart, to idle workers: how long each waited from its
        commit to its claim, by the server's clock (`enqueued_at` to `started_at`)."""
        ids = []
        for _ in range(samples):
            time.sleep(gap_s)
            ids.append(self.workers.enqueue(self.actor).id)
        query = (
            "SELECT 1000 * extract(epoch FROM started_at - enqueued_at)::float8 FROM jobs"
            " WHERE id = ANY(%s) AND started_at IS NOT NULL"
        )
        deadline = time.monotonic() + 30
        while len(waits := [w for (w,) in self.monitor.execute(query, (ids,)).fetchall()]) < samples:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{samples - len(waits)} lone jobs not started within 30 s")
            time.sleep(0.05)
        return waits

    def reset(self) -> None:
        """The bench's jobs go (their attempts with them); VACUUM, as autovacuum would."""
        self.monitor.execute("DELETE FROM jobs WHERE actor <> %s", (HISTORY_ACTOR,))
        self.monitor.execute("VACUUM jobs, job_attempts")

    def close(self) -> None:
        from db import pool

        pool.close()
        self.monitor.close()
