"""One burn-down of the code of the working directory's tree: N no-op jobs (bench.throughput's
`bench_noop`, no limit) enqueued, then `skyport worker -p P -t T` started; prints jobs/s from the
first job's start to the last one's end. `python -m bench.flow --baseline REV` runs it in a
worktree of REV and in this tree, alternately: the same figure before and after a change.

    cd TREE && python /path/to/bench/flow/burn.py --jobs N --processes P --threads T \
        --database-url URL --redis-url URL

Only what every tree of the project since the benchmarks' support modules has: `bench.support`,
`bench.throughput.ledger_actors`, `workers.enqueue_many`, `skyport db upgrade`.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path.cwd()))  # the tree under test, not the one this file comes from

from bench.support.cpu import CpuMeter
from bench.support.databases import bench_database, redis_namespaces
from bench.support.procs import SKYPORT, Workers

HISTORY = 20_000  # finished jobs in the ledger, as bench.throughput keeps


def main() -> None:
    p = argparse.ArgumentParser()
    for flag, default in (("--jobs", 20_000), ("--processes", 2), ("--threads", 8)):
        p.add_argument(flag, type=int, default=default)
    p.add_argument("--database-url", required=True)
    p.add_argument("--redis-url", required=True)
    args = p.parse_args()
    tag = secrets.token_hex(4)
    namespace = f"skyport_bench_{tag}_burn"
    with (
        redis_namespaces(args.redis_url, namespace),
        bench_database(args.database_url, f"skyport_bench_{tag}_burn") as url,
    ):
        env = {
            "DATABASE_URL": url,
            "BROKER_URL": args.redis_url,
            "SKYPORT_BROKER_NAMESPACE": namespace,
            "SKYPORT_EXTRA_MODULES": "bench.throughput.ledger_actors",
        }
        os.environ.update(env)
        rate, cpu_ms = burn(args, url, env)
        print(f"{rate:.0f} {cpu_ms:.4f}")


def burn(args: argparse.Namespace, url: str, env: dict[str, str]) -> tuple[float, float]:
    """Jobs/s, and CPU ms per job of the workers and their PostgreSQL backends."""
    import psycopg

    import config

    config.get.cache_clear()
    import workers
    from bench.throughput.ledger_actors import bench_noop

    with psycopg.connect(url, autocommit=True) as monitor:
        monitor.execute(
            "INSERT INTO jobs (actor, queue, state, attempts, max_attempts, started_at, finished_at,"
            " worker_id) SELECT 'bench_history', 'default', 'succeeded', 1, 1, now(), now(), 'bench'"
            " FROM generate_series(1, %s)",
            (HISTORY,),
        )
        for _ in range(0, args.jobs, 1000):
            workers.enqueue_many([workers.JobSpec(bench_noop)] * 1000)
        monitor.execute("VACUUM ANALYZE jobs")
        log = Path(f"/tmp/skyport-burn-{os.getpid()}.log")
        runner = Workers([*SKYPORT, "worker", "-p", str(args.processes), "-t", str(args.threads)], env, log)
        runner.start()
        assert runner.proc is not None
        meter = CpuMeter([runner.proc.pid], psycopg.conninfo.conninfo_to_dict(url)["dbname"], None)
        before = meter.snapshot()
        try:
            done = "SELECT count(*) FROM jobs WHERE actor = 'bench_noop' AND state = 'succeeded'"
            while monitor.execute(done).fetchone()[0] < args.jobs:
                runner.check_alive()
                time.sleep(0.05)
            cpu = CpuMeter.per_job_ms(before, meter.snapshot(), args.jobs)
        finally:
            runner.stop()
            log.unlink(missing_ok=True)
        span = (
            "SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM jobs"
            " WHERE actor = 'bench_noop'"
        )
        return args.jobs / float(monitor.execute(span).fetchone()[0]), cpu["workers"] + cpu["postgres"]


if __name__ == "__main__":
    main()
