"""Throughput of the ledger path against bare Dramatiq: same Redis, same workers, same no-op actor.

    .venv/bin/python -m bench.throughput [--jobs 20000] [--processes 2] [--threads 8] [--skip-bare]

For each path, (a) bare Dramatiq `actor.send` and (b) `workers.enqueue` through the ledger:

  enqueue      N jobs one by one from this process, no worker running;
  burn-down    those N jobs, the workers started only then; timed from the workers' spawn, and
               from the moment the first worker process is ready (a Redis heartbeat of its broker
               for (a), its `workers` row for (b): after its consumers and, for (b), its relay
               started);
  end-to-end   workers running, N jobs enqueued one by one: first enqueue to last completion;

and, for the ledger path only, `--lone-jobs` jobs enqueued alone, 0.3 s apart, to the idle workers
after end-to-end (each one's wait from its commit to its claim, by the server's clock),
`enqueue_many` in batches, and the latency of `enqueue()` with a dedup key. A job is complete
when its message is acknowledged (a) or its row `succeeded` (b). Each phase starts with an
empty queue and no unfinished job in the ledger, which holds `--history` finished jobs throughout
(see paths.HISTORY_ACTOR). The bench makes its own database and Redis namespaces and removes them
at the end.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench.support.args import add_server_options
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, machine_facts, start_run
from bench.throughput.measure import PathResult, measure_ledger_extras, measure_path
from bench.throughput.paths import BarePath, LedgerPath
from bench.throughput.report import print_comparison, print_extras, print_targets, target_rows

# ---- main -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per phase (default: %(default)s)")
    p.add_argument("--processes", "-p", type=int, default=2, help="worker processes (default: %(default)s)")
    p.add_argument("--threads", "-t", type=int, default=8, help="threads per process (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1000, help="enqueue_many batch size (default: %(default)s)")
    p.add_argument("--latency-samples", type=int, default=2000, help="enqueue() latency samples")
    p.add_argument(
        "--lone-jobs",
        type=int,
        default=40,
        help="jobs enqueued alone to idle workers, for their wait from commit to claim (0: none)",
    )
    p.add_argument("--skip-bare", action="store_true", help="run the ledger path only")
    p.add_argument("--skip-extras", action="store_true", help="skip enqueue_many and the latency run")
    p.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="finished jobs in the ledger before the bench starts (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take at most")
    add_server_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag, log_dir, load_before = start_run("bench")
    bare_ns, ledger_ns = f"skyport_bench_{tag}_bare", f"skyport_bench_{tag}_ledger"
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, bare_ns, ledger_ns),
            bench_database(args.database_url, f"skyport_bench_{tag}") as database_url,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            print(
                f"  jobs {args.jobs:,}; workers -p {args.processes} -t {args.threads}; "
                f"ledger history: {args.history:,} finished jobs; logs in {log_dir}\n"
            )
            run(args, database_url, bare_ns, ledger_ns, log_dir)
        ok = True
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0


def run(args: argparse.Namespace, database_url: str, bare_ns: str, ledger_ns: str, log_dir: Path) -> None:
    bare_result = PathResult()
    if not args.skip_bare:
        bare = BarePath(args.redis_url, bare_ns)
        try:
            bare_result = measure_path(bare, args, log_dir)
        finally:
            bare.close()
    ledger = LedgerPath(database_url, args.redis_url, ledger_ns, args.history)
    try:
        ledger_result = measure_path(ledger, args, log_dir)
        extras = None if args.skip_extras else measure_ledger_extras(ledger, args)
    finally:
        ledger.close()
    print_comparison(args.jobs, bare_result, ledger_result)
    if extras is not None:
        print_extras(extras)
    print_targets(target_rows(args.jobs, bare_result, ledger_result, extras))
    cfg = ledger.settings
    print(
        "\nburn-down: 'from spawn' includes the workers' boot; 'from first worker ready' starts when the"
        "\nfirst worker process registered (Redis heartbeat for (a), `workers` row for (b): consumers and"
        f"\nrelay running). Relay batch {cfg.worker.relay_batch}, relay sweep {cfg.worker.relay_sweep_s:g} s."
    )


if __name__ == "__main__":
    sys.exit(main())
