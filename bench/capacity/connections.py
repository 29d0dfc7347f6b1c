"""Connection budget: many worker processes on one PgBouncer pool, against the same workers
connected to the server directly.

    .venv/bin/python -m bench.capacity.connections [--jobs 20000] [--processes 16] [--threads 2]
        [--pool-size 20] [--modes direct,pgbouncer] [--kind write]

Each mode starts `skyport worker -p 16 -t 2` on a database of the bench's own: `direct` with
DATABASE_URL on the server; `pgbouncer` with DATABASE_URL through a private PgBouncer in
transaction pooling mode with one pool of `--pool-size` server connections (tests/pgbouncer.py),
SKYPORT_DATABASE_POOLER=transaction and DATABASE_DIRECT_URL on the server. The bench enqueues
through the same DATABASE_URL as the workers. Then N jobs in enqueue_many batches until every one
succeeded: jobs/s end to end; the bench database's backends (pg_stat_activity) and PgBouncer's
pool (SHOW POOLS) sampled every 0.1 s; warnings and errors in the workers' logs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.capacity.budget import RunResult, run_mode
from bench.capacity.ledger import Ledger
from bench.support.args import add_server_options
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, machine_facts, start_run
from bench.support.timing import fmt
from tests.pgbouncer import PgBouncer

# The pool's connections beyond the threads (db/pool.py), and a worker process's own two.
POOL_EXTRA, OWN = 4, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.capacity.connections", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per mode (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1000, help="enqueue_many batch size (default: %(default)s)")
    p.add_argument("--processes", "-p", type=int, default=16, help="worker processes (default: %(default)s)")
    p.add_argument("--threads", "-t", type=int, default=2, help="threads per process (default: %(default)s)")
    p.add_argument(
        "--pool-size", type=int, default=20, help="PgBouncer server connections (default: %(default)s)"
    )
    p.add_argument("--modes", default="direct,pgbouncer", help="modes, in order (default: %(default)s)")
    p.add_argument(
        "--kind", default="write", choices=("noop", "write"), help="the job (default: %(default)s)"
    )
    p.add_argument("--history", type=int, default=20_000, help="finished jobs in the ledger throughout")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take at most")
    add_server_options(p, logs="the workers' and PgBouncer's logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag, log_dir, load_before = start_run("bench")
    namespace = f"skyport_bench_{tag}_connections"
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, namespace),
            bench_database(args.database_url, f"skyport_bench_{tag}") as database_url,
            PgBouncer(database_url, pool_size=args.pool_size) as bouncer,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            print(
                f"  pgbouncer      {_pgbouncer_version()}; pool_mode=transaction,"
                f" default_pool_size={args.pool_size}"
            )
            print(
                f"  jobs {args.jobs:,} ({args.kind}); workers -p {args.processes} -t {args.threads};"
                f" logs in {log_dir}\n"
            )
            results = run(args, database_url, namespace, bouncer, log_dir)
            (log_dir / "pgbouncer.log").write_text(bouncer.log_text())
        report(args, results)
        ok = all(r.failure is None for r in results)
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0


def _pgbouncer_version() -> str:
    import subprocess

    from tests.pgbouncer import pgbouncer_binary

    binary = pgbouncer_binary()
    done = subprocess.run([binary, "--version"], capture_output=True, text=True) if binary else None
    return done.stdout.splitlines()[0] if done and done.stdout else "?"


def run(
    args: argparse.Namespace, direct_url: str, namespace: str, bouncer: PgBouncer, log_dir: Path
) -> list[RunResult]:
    common = {"BROKER_URL": args.redis_url, "SKYPORT_BROKER_NAMESPACE": namespace}
    envs = {
        "direct": {"DATABASE_URL": direct_url, "DATABASE_DIRECT_URL": "", "SKYPORT_DATABASE_POOLER": "none"},
        "pgbouncer": {
            "DATABASE_URL": bouncer.url(direct_url),
            "DATABASE_DIRECT_URL": direct_url,
            "SKYPORT_DATABASE_POOLER": "transaction",
        },
    }
    admin_url = bouncer.url("postgresql://postgres@127.0.0.1/pgbouncer")
    ledger = Ledger({**common, **envs["direct"]}, args.history)
    results = []
    try:
        for mode in args.modes.split(","):
            print(
                f"{mode}: workers -p {args.processes} -t {args.threads}, {args.jobs:,} jobs ...", flush=True
            )
            admin = admin_url if mode == "pgbouncer" else None
            results.append(
                run_mode(mode, ledger, {**common, **envs[mode]}, args, log_dir / f"{mode}.log", admin)
            )
            if results[-1].failure:
                print(f"  {mode} failed: {results[-1].failure}", flush=True)
    finally:
        ledger.close()
    return results


def report(args: argparse.Namespace, results: list[RunResult]) -> None:
    budget = args.processes * (args.threads + POOL_EXTRA + OWN)
    print(
        f"\nConnection budget of the workers: {args.processes} x"
        f" ({args.threads} threads + {POOL_EXTRA} + {OWN})"
        f" = {budget} client connections at most"
    )
    rows = [
        ("end to end, first enqueue to last done [jobs/s]", lambda r: r.jobs / r.seconds, 0),
        ("worker boot, spawn to all registered [s]", lambda r: r.boot_s, 1),
        ("peak backends of the bench database", lambda r: r.peaks.connections, 0),
        ("  of which active", lambda r: r.peaks.active, 0),
        ("  of which idle in transaction", lambda r: r.peaks.idle_in_transaction, 0),
        (
            "PgBouncer: peak server connections",
            lambda r: r.peaks.pooler_servers if r.mode != "direct" else float("nan"),
            0,
        ),
        (
            "PgBouncer: peak clients waiting",
            lambda r: r.peaks.pooler_waiting if r.mode != "direct" else float("nan"),
            0,
        ),
        (
            "PgBouncer: longest wait seen [s]",
            lambda r: r.peaks.pooler_max_wait_s if r.mode != "direct" else float("nan"),
            3,
        ),
        ("log lines WARNING", lambda r: r.levels.get("WARNING", 0), 0),
        ("log lines ERROR + CRITICAL", lambda r: r.levels.get("ERROR", 0) + r.levels.get("CRITICAL", 0), 0),
        ("log lines not JSON (tracebacks, stderr)", lambda r: r.levels.get("other", 0), 0),
    ]
    head = "".join(f"{r.mode:>14}" for r in results)
    ratio_head = f"{'/'.join(r.mode for r in results[::-1])}" if len(results) == 2 else ""
    print(f"\n{'':<50}{head}{ratio_head:>22}")
    for label, value, digits in rows:
        values = [_safe(value, r) for r in results]
        ratio = values[1] / values[0] if len(values) == 2 and values[0] else float("nan")
        cells = "".join(f"{fmt(v, digits):>14}" for v in values)
        print(f"{label:<50}{cells}{fmt(ratio, 2) if len(values) == 2 else '':>22}")
    for r in results:
        print(f"\n{r.mode}: {r.failure or 'all jobs succeeded'}; peak sampled over {r.peaks.samples} samples")
        for n, text in r.kinds:
            print(f"  {n:>6} x {text}")


def _safe(value, result: RunResult) -> float:
    try:
        return float(value(result))
    except (ZeroDivisionError, TypeError, ValueError):
        return float("nan")


if __name__ == "__main__":
    sys.exit(main())
