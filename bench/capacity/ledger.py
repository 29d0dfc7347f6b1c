"""The capacity bench's ledger: its database, its two actors, enqueueing and completion.

The two jobs are those of the other benches: `bench_noop` (bench/throughput, does nothing) and
`bench_write` (bench/peers, inserts one row into `bench_writes` on a connection of Skyport's pool).
"""

from __future__ import annotations

import os
import time

import psycopg

from bench.capacity.cpu import MONITOR_APP
from bench.peers.write import BENCH_WRITES_CREATE
from bench.throughput.paths import HISTORY_ACTOR, SEED_HISTORY

ACTOR_MODULES = "bench.throughput.ledger_actors,bench.peers.ledger_actors"
KINDS = ("noop", "write")
# The bench's jobs (their attempts go with them) and writes; the history stays.
DELETE_BENCH_JOBS = "DELETE FROM jobs WHERE actor <> %s"
TRUNCATE_WRITES = "TRUNCATE bench_writes"
# Compacts what a scenario left, so that the next one starts from the same, dense tables.
VACUUM_FULL = "VACUUM (FULL, ANALYZE) jobs, job_attempts, workers, bench_writes"
TOTAL_SIZE = (
    "SELECT sum(pg_total_relation_size(t)) FROM unnest('{jobs,job_attempts,bench_writes}'::regclass[]) t"
)
BENCH_DONE = "SELECT count(*) FROM jobs WHERE actor = ANY(%s) AND state = 'succeeded'"


class Ledger:
    """The bench's database through Skyport's own `enqueue` / `enqueue_many`."""

    label = "ledger"

    def __init__(self, env: dict[str, str], history: int) -> None:
        self.use(env)
        import workers
        from bench.peers.ledger_actors import bench_write
        from bench.throughput.ledger_actors import bench_noop

        self.workers = workers
        self.actors = {"noop": bench_noop, "write": bench_write}
        self.names = [a.actor_name for a in self.actors.values()]
        self.direct_url = env.get("DATABASE_DIRECT_URL") or env["DATABASE_URL"]
        self.dbname = psycopg.conninfo.conninfo_to_dict(self.direct_url)["dbname"]
        self.monitor = psycopg.connect(self.direct_url, autocommit=True, application_name=MONITOR_APP)
        self.monitor.execute(BENCH_WRITES_CREATE)
        self.monitor.execute(SEED_HISTORY, (HISTORY_ACTOR, history))
        self.monitor.execute("VACUUM ANALYZE jobs, job_attempts")

    def use(self, env: dict[str, str]) -> None:
        """Enqueue with these settings from now on (this process's environment and configuration;
        another DATABASE_URL: a pooler, or not)."""
        import config
        from db import pool

        self.env = {**env, "SKYPORT_EXTRA_MODULES": ACTOR_MODULES}
        os.environ.update(self.env)
        config.get.cache_clear()
        pool.close()

    def spec(self, kind: str, n: int):
        kwargs = {"n": n} if kind == "write" else None
        return self.workers.JobSpec(self.actors[kind], kwargs=kwargs)

    def send_one(self, kind: str, n: int) -> None:
        self.workers.enqueue(self.actors[kind], kwargs={"n": n} if kind == "write" else None)

    def send_batch(self, kind: str, numbers: range) -> None:
        self.workers.enqueue_many([self.spec(kind, n) for n in numbers])

    def send(self, kind: str, mode: str, jobs: int, batch: int) -> None:
        """`jobs` jobs of one kind, one `enqueue` each ('one') or `enqueue_many` of `batch` ('batch')."""
        if mode == "one":
            for n in range(jobs):
                self.send_one(kind, n)
            return
        for start in range(0, jobs, batch):
            self.send_batch(kind, range(start, min(jobs, start + batch)))

    def done(self) -> int:
        return self.monitor.execute(BENCH_DONE, (self.names,)).fetchone()[0]

    def remaining(self, jobs: int) -> int:
        return jobs - self.done()

    def progress(self) -> str:
        rows = self.monitor.execute("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY 1").fetchall()
        return ", ".join(f"{state}: {count}" for state, count in rows)

    def scalar(self, query: str, params: tuple = ()):
        return self.monitor.execute(query, params).fetchone()[0]

    def reset(self, *, compact: bool = True) -> None:
        """The bench's jobs and writes go; the tables compacted (outside any measured window)."""
        self.monitor.execute(DELETE_BENCH_JOBS, (HISTORY_ACTOR,))
        self.monitor.execute(TRUNCATE_WRITES)
        if compact:
            self.compact()

    def compact(self, tries: int = 5) -> None:
        """VACUUM FULL until the tables stop shrinking: a row deleted while another transaction of
        the database was open (a worker's, for a moment) is kept by the first one."""
        last = None
        for _ in range(tries):
            self.monitor.execute(VACUUM_FULL)
            size = self.scalar(TOTAL_SIZE)
            if size == last:
                break
            last = size
            time.sleep(0.5)
        self.monitor.execute("SELECT pg_stat_force_next_flush()")

    def close(self) -> None:
        from db import pool

        pool.close()
        self.monitor.close()
