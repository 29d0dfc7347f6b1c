"""Capacity-plan measurements: what one job costs PostgreSQL, Redis and the CPUs, on this machine.

    .venv/bin/python -m bench.capacity [--jobs 20000] [--batch 1000] [--processes 2] [--threads 8]

For each job kind (`noop`: does nothing; `write`: inserts one row, as bench/peers' job) and each
way of enqueueing (`one`: `enqueue()` per job; `batch`: `enqueue_many()` batches), with
`skyport worker -p 2 -t 8` running: N jobs from the bench process until the last is `succeeded`,
then per job

  WAL bytes      this database's records between the LSNs before and after (pg_waldump), with
                 their full-page images and COMMIT records, and the server-wide LSN difference;
  row writes     n_tup_ins / upd / hot_upd / del of jobs, job_attempts, workers, bench_writes;
  stored bytes   jobs + job_attempts (heap, TOAST, indexes) as written and after VACUUM FULL;
  CPU            the bench process, the worker processes, the database's backends, Redis (/proc).

Before those, with no worker running: Redis memory per queued message (N jobs of each kind). And
the workers' cost when idle. The bench makes its own database and Redis namespace and removes them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench.capacity import redis_memory, report
from bench.capacity.cpu import ENQUEUER_APP, WORKER_APP, SplitMeter
from bench.capacity.ledger import KINDS, Ledger
from bench.capacity.scenario import Bench
from bench.support.args import add_server_options
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, machine_facts, start_run
from bench.support.procs import SKYPORT, Workers
from bench.support.timing import wait_until_complete

WARMUP_JOBS = 500
MODES = ("one", "batch")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per window (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1000, help="enqueue_many batch size (default: %(default)s)")
    p.add_argument("--processes", "-p", type=int, default=2, help="worker processes (default: %(default)s)")
    p.add_argument("--threads", "-t", type=int, default=8, help="threads per process (default: %(default)s)")
    p.add_argument("--kinds", default=",".join(KINDS), help="job kinds (default: %(default)s)")
    p.add_argument("--modes", default=",".join(MODES), help="ways of enqueueing (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="windows per kind and mode (default: %(default)s)")
    p.add_argument("--redis-jobs", type=int, help="messages for the Redis figures (default: --jobs)")
    p.add_argument("--idle-s", type=float, default=5.0, help="seconds of the idle window (0: none)")
    p.add_argument("--no-checkpoint", action="store_true", help="no CHECKPOINT before each window")
    p.add_argument(
        "--stats-quiet-s",
        type=float,
        default=11.0,
        help="seconds the row counters must stay unchanged before they are read (default: %(default)s)",
    )
    p.add_argument("--history", type=int, default=20_000, help="finished jobs in the ledger throughout")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a window may take at most")
    add_server_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag, log_dir, load_before = start_run("bench")
    namespace = f"skyport_bench_{tag}_capacity"
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, namespace),
            bench_database(args.database_url, f"skyport_bench_{tag}") as database_url,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            print(
                f"  jobs {args.jobs:,} per window; workers -p {args.processes} -t {args.threads};"
                f" logs in {log_dir}\n"
            )
            run(args, database_url, namespace, log_dir)
        ok = True
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0


def run(args: argparse.Namespace, database_url: str, namespace: str, log_dir: Path) -> None:
    env = {"DATABASE_URL": database_url, "BROKER_URL": args.redis_url, "SKYPORT_BROKER_NAMESPACE": namespace}
    os.environ["PGAPPNAME"] = ENQUEUER_APP  # libpq's default application_name, for this process
    ledger = Ledger(env, args.history)
    kinds, modes = args.kinds.split(","), args.modes.split(",")
    try:
        client = redis.Redis.from_url(args.redis_url)
        ledger.send("noop", "batch", WARMUP_JOBS, args.batch)  # imports, pool, first statements
        client.delete(*redis_memory.queue_keys(namespace))
        ledger.reset()
        print("Redis memory per queued message (no worker running) ...", flush=True)
        redis_figs = [
            redis_memory.measure(ledger, client, namespace, k, args.redis_jobs or args.jobs, args.batch)
            for k in kinds
        ]
        argv = [*SKYPORT, "worker", "-p", str(args.processes), "-t", str(args.threads)]
        workers = Workers(argv, {**ledger.env, "PGAPPNAME": WORKER_APP}, log_dir / "workers.log")
        workers.start()
        try:
            windows, idle, prune = _measure(args, ledger, workers, kinds, modes, client)
        finally:
            workers.stop()
    finally:
        ledger.close()
    report.print_redis(redis_figs)
    if idle is not None:
        report.print_idle(idle, args.processes)
    report.print_windows(windows)
    if prune is not None:
        report.print_prune(prune)


def _measure(args, ledger: Ledger, workers: Workers, kinds, modes, client: redis.Redis):
    redis_port = client.connection_pool.connection_kwargs.get("port") or urlsplit(args.redis_url).port
    bench = Bench(
        ledger,
        workers,
        SplitMeter([workers.proc.pid], ledger.dbname, redis_port, ledger.monitor),
        checkpoint=not args.no_checkpoint,
        timeout_s=args.timeout,
        quiet_s=args.stats_quiet_s,
    )
    if bench.wal_reader is None:
        print("pg_waldump or pg_wal not readable here: only the server-wide WAL figures", flush=True)
    _wait_ready(ledger, workers, args.processes)
    for kind in kinds:  # warm-up: every worker process's connections and statements
        ledger.send(kind, "batch", WARMUP_JOBS, args.batch)
    wait_until_complete(
        ledger, WARMUP_JOBS * len(kinds), time.monotonic() + args.timeout, workers.check_alive
    )
    idle = bench.idle(args.idle_s) if args.idle_s else None
    windows = []
    for _ in range(args.repeat):
        for kind in kinds:
            for mode in modes:
                print(f"{kind} jobs, {report.MODES[mode]}: {args.jobs:,} ...", flush=True)
                windows.append(bench.window(kind, mode, args.jobs, args.batch))
    print("prune_finished of the last window's jobs, then VACUUM ...", flush=True)
    return windows, idle, bench.prune()


def _wait_ready(ledger: Ledger, workers: Workers, processes: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while ledger.scalar("SELECT count(*) FROM workers") < processes:
        workers.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{processes} worker processes not registered within {timeout_s:g} s")
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
