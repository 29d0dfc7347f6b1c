"""Side by side: the same jobs, each one small PostgreSQL write, through bare Dramatiq, Skyport's
ledger path, procrastinate and pgqueuer, on the same machine in the same run.

    .venv/bin/pip install -e '.[bench]'          # procrastinate, pgqueuer, asyncpg
    .venv/bin/python -m bench.peers [--jobs 20000] [--processes 2] [--systems bare,ledger,...]
    .venv/bin/python -m bench.peers --sweep --jobs 5000   # try each peer's candidate settings

Each job inserts one row (its job number) into `bench_writes` in its system's own database.
For every system and setting (its documented defaults, and its best setting found: see
bench/peers/systems.py), with its 2 worker processes already running and warmed up:

  one by one   N jobs enqueued one call per job from this process (actor.send, enqueue(),
               task.defer(), queries.enqueue(one job)); end-to-end = first enqueue to last job done;
  16 threads   the same N one-by-one calls from --enqueue-threads threads of this process at once
               (a web process whose request threads enqueue one job each);
  batched      the same with --enqueue-batch jobs per call (a Dramatiq group, enqueue_many,
               task.batch_defer, queries.enqueue(lists)).

A job is done by its system's own record: message acknowledged (bare Dramatiq), ledger row
`succeeded`, procrastinate job `succeeded`, pgqueuer job gone from its queue table. After each
phase every job number must be in `bench_writes` exactly once. Each system gets a fresh database
(its schema set up by its own tooling) and, for the Redis brokers, a key namespace of the bench's
own; everything is dropped at the end. Ratios are ours / theirs: above 1 we are faster.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack

from bench.peers.report import (
    all_writes_ok,
    print_cpu_budgets,
    print_cpu_table,
    print_one_by_one_floor,
    print_table,
    print_targets,
    target_rows,
)
from bench.peers.run import PHASES, RunResult, run_setting
from bench.peers.systems import (
    BareSystem,
    LedgerSystem,
    PgqueuerSystem,
    ProcrastinateSystem,
    System,
    plain_database,
)
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, machine_facts, start_run
from bench.support.probes import measure

SYSTEM_KEYS = ("bare", "ledger", "procrastinate", "pgqueuer")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per phase (default: %(default)s)")
    p.add_argument("--processes", "-p", type=int, default=2, help="worker processes per system")
    p.add_argument("--enqueue-batch", type=int, default=1000, help="jobs per batched enqueue call")
    p.add_argument("--enqueue-threads", type=int, default=16, help="threads of the 16-threads phase")
    p.add_argument("--systems", default=",".join(SYSTEM_KEYS), help="comma-separated, of %(default)s")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated, of %(default)s")
    p.add_argument(
        "--sweep", action="store_true", help="run each peer's candidate settings, not default+tuned"
    )
    p.add_argument(
        "--history", type=int, default=20_000, help="finished jobs in the ledger (as bench.throughput)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a phase may take at most")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="server to use (a database per system is created and dropped there)",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    args.systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    args.phases = tuple(s.strip() for s in args.phases.split(",") if s.strip())
    for name, chosen, known in (("--systems", args.systems, SYSTEM_KEYS), ("--phases", args.phases, PHASES)):
        unknown = set(chosen) - set(known)
        if unknown or not chosen:
            parser.error(
                f"{name}: choose from {', '.join(known)} (got {', '.join(sorted(unknown)) or 'none'})"
            )
    if min(args.jobs, args.enqueue_batch, args.processes, args.enqueue_threads) < 1:
        parser.error("--jobs, --enqueue-batch, --enqueue-threads and --processes must be at least 1")
    if {"procrastinate", "pgqueuer"} & set(args.systems):
        try:
            import pgqueuer  # noqa: F401
            import procrastinate  # noqa: F401
        except ImportError as exc:
            parser.error(f"{exc.name} is not installed: .venv/bin/pip install -e '.[bench]'")
    return args


def database_name(tag: str, key: str) -> str:
    return f"skyport_peers_{tag}_{key}"


def open_system(key: str, args: argparse.Namespace, tag: str, stack: ExitStack) -> System:
    """The system on a database of its own (and a Redis namespace for the Dramatiq ones)."""
    name = database_name(tag, key)
    namespace = f"skyport_peers_{tag}_{key}"
    if key in ("bare", "ledger"):
        stack.enter_context(redis_namespaces(args.redis_url, namespace))
    if key == "ledger":
        url = stack.enter_context(bench_database(args.database_url, name))
        system: System = LedgerSystem(url, args.redis_url, namespace, args.history)
    else:
        url = stack.enter_context(plain_database(args.database_url, name))
        if key == "bare":
            system = BareSystem(args.redis_url, namespace, url)
        elif key == "procrastinate":
            system = ProcrastinateSystem(url)
        else:
            system = PgqueuerSystem(url)
    stack.callback(system.close)
    return system


def library_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("procrastinate", "pgqueuer", "asyncpg", "psycopg-pool"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tag, log_dir, load_before = start_run("peers")
    runs: list[RunResult] = []
    ok = False
    speed = measure(args.database_url, args.redis_url)  # before any process of the bench starts
    try:
        with ExitStack() as stack:
            for key in args.systems:
                system = open_system(key, args, tag, stack)
                if not runs:
                    facts = machine_facts(args.database_url, args.redis_url, speed)
                    facts["libraries"] = library_versions()
                    for name, value in facts.items():
                        print(f"  {name:<14} {value}")
                    print(
                        f"  jobs {args.jobs:,} per phase; {args.processes} worker processes per system; "
                        f"batches of {args.enqueue_batch:,}; logs in {log_dir}\n",
                        flush=True,
                    )
                for setting in system.worker_settings(args.sweep):
                    runs.append(run_setting(system, setting, args, log_dir, database_name(tag, key)))
        print_table(runs, args.phases)
        print_cpu_table(runs, args.phases)
        print_targets(target_rows(runs, args.phases))
        print_one_by_one_floor(runs, speed)
        print_cpu_budgets(runs)
        ok = all_writes_ok(runs)
        if not ok:
            print("\nSOME PHASE LOST OR DOUBLED A WRITE: see the lines marked WRONG above")
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
