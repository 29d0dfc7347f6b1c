"""Payment callbacks end to end: HTTP intake -> inbox -> workers -> shipments, processed in batches,
with one job per event (the earlier path) as the peer in the same run.

    .venv/bin/python -m bench.families.payments [--events 20000] [--shipments 2000] [--duplicates 0.05]
                                                [--processes 2] [--threads 8] [--web-workers 1]
                                                [--concurrency 32] [--latency-rate 500]
                                                [--paths batch,per-event] [--access-log]

For each processing path (PAYMENT_PROCESSING), on a database and Redis namespace of its own
(removed at the end): starts a real `skyport web` and `skyport worker -p N`, creates the shipments,
then posts the simulator's signed Standard Webhooks callbacks (duplicates, out-of-order
deliveries, failed payments, partial refunds, disputes won and lost) as fast as the web process
answers, with `--concurrency` requests in flight (the simulator's keep-alive asyncio client).
Reports, for each path and the batch path's ratio to the peer:

  end-to-end   callbacks/s from the first POST to the last event processed
  intake       requests/s and latency p50/p99 of POST /webhooks/payments/{provider}
  cpu          CPU ms per callback of each process role (the client, the web process, the
               workers, the database's backends, Redis) from /proc
  steady       intake latency p50/p99 at --latency-rate callbacks/s, workers running
  processing   the workers alone: callbacks stored while they were stopped, then drained by
               freshly started workers (events/s and CPU per event from the first one processed)
  correctness  shipments whose amount_paid differs from the expected ledger, drift, problem
               events, refunds or chargebacks applied twice
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from bench.families.payments_phases import SECRET, Figures, Rig, latency, measure
from bench.support.args import add_server_options
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, load_average, machine_facts, start_run
from bench.support.procs import SKYPORT, Workers, free_port

TARGET_END_TO_END_PER_S = 2000.0
TARGET_PROCESSING_PER_S = 4000.0
TARGET_P99_MS = 50.0
PATHS = ("batch", "per-event")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.families.payments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--shipments", type=int, default=2_000)
    p.add_argument("--duplicates", type=float, default=0.05)
    p.add_argument("--processes", type=int, default=2, help="worker processes")
    p.add_argument("--threads", type=int, default=8, help="threads per worker process")
    p.add_argument("--web-workers", type=int, default=1, help="`skyport web --workers N`")
    p.add_argument(
        "--access-log", action=argparse.BooleanOptionalAction, default=False, help="the web's access log"
    )
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight")
    p.add_argument("--latency-events", type=int, default=5000, help="callbacks of the steady-rate phase")
    p.add_argument("--latency-rate", type=float, default=500.0, help="callbacks/s of the steady-rate phase")
    p.add_argument("--drain-events", type=int, default=20_000, help="callbacks of the processing-alone phase")
    p.add_argument("--batch-size", type=int, default=500, help="PAYMENT_BATCH_SIZE of the batch path")
    p.add_argument("--paths", default=",".join(PATHS), help="processing paths to run, in order")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take")
    add_server_options(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag, logs, load_before = start_run("bench.payments")
    results: dict[str, Figures] = {}
    facts: dict = {}
    try:
        for path in args.paths.split(","):
            name = f"skyport_bench_payments_{tag}_{path.replace('-', '_')}"
            namespace = f"skyport-bench-payments-{tag}-{path}"
            with (
                redis_namespaces(args.redis_url, namespace),
                bench_database(args.database_url, name) as database_url,
            ):
                results[path] = run_path(args, path, database_url, name, namespace, logs)
                facts = facts or machine_facts(database_url, args.redis_url)
    finally:
        finish_run(logs, keep=args.keep_logs, load_before=load_before)
    out = {path: report(args, figures) for path, figures in results.items()}
    print(json.dumps({**out, **ratios(results), "load before": load_before, "load after": load_average(),
                      "machine": facts}, indent=2, default=str))  # fmt: skip
    return verdict(results)


def run_path(
    args: argparse.Namespace, path: str, database_url: str, dbname: str, namespace: str, logs
) -> Figures:
    env = {
        "DATABASE_URL": database_url,
        "BROKER_URL": args.redis_url,
        "SKYPORT_BROKER_NAMESPACE": namespace,
        "PAYMENT_WEBHOOK_SECRET": SECRET,
        "PAYMENT_PROCESSING": path,
        "PAYMENT_BATCH_SIZE": str(args.batch_size),
        "SKYPORT_SECRET_KEY": "bench",
        "WEB_CONCURRENCY": str(args.web_workers),
        "SKYPORT_WEB_ACCESS_LOG": "1" if args.access_log else "0",
        # The runtime skips a retried job's message consumed before the relay committed; the
        # lifeline publishes it again after this (default 300 s). See docs/benchmarks.md.
        "SKYPORT_REPUBLISH_AFTER_S": "5",
    }
    os.environ.update(env)
    import config

    config.get.cache_clear()
    port = free_port()
    web = Workers([*SKYPORT, "web", "--port", str(port)], env, logs / f"web-{path}.log")
    workers = Workers(
        [*SKYPORT, "worker", "-p", str(args.processes), "-t", str(args.threads)],
        env,
        logs / f"worker-{path}.log",
    )
    rig = Rig(args, database_url, dbname, f"http://127.0.0.1:{port}", web, workers, path, seed=10)
    try:
        return measure(rig)
    finally:
        workers.stop()
        web.stop()


def report(args: argparse.Namespace, figures: Figures) -> dict:
    """One path's figures, by label, in the order printed."""
    plan, stats, found = figures.plan, figures.stats, figures.correctness
    assert plan is not None and stats is not None and figures.steady is not None
    return {
        "callbacks posted": len(plan.bodies),
        "unique events": plan.unique_events,
        "http statuses": stats.statuses,
        "http errors (first)": stats.errors[:3],
        "end-to-end callbacks/s (first POST -> last processed)": round(
            len(plan.bodies) / figures.end_to_end_s, 1
        ),
        "end-to-end seconds": round(figures.end_to_end_s, 1),
        "intake requests/s (during end to end)": round(len(plan.bodies) / figures.intake_s, 1),
        "intake latency p50 / p99 ms (saturated)": latency(stats),
        "cpu ms per callback, end to end, by process": figures.cpu,
        "cpu ms per callback, end to end, all": round(sum(figures.cpu.values()), 3),
        f"steady intake at {args.latency_rate:.0f}/s: latency p50 / p99 ms": latency(figures.steady),
        f"steady intake at {args.latency_rate:.0f}/s: statuses": figures.steady.statuses,
        "processing alone: events/s": round(figures.drained / figures.drain_s, 1),
        "processing alone: events drained": figures.drained,
        "processing alone: cpu ms per event, by process": figures.drain_cpu,
        "processing jobs (all phases)": figures.jobs,
        "inbox statuses (end to end)": found["statuses"],
        "shipments not matching the expected ledger": len(found["wrong"]),
        "shipments with drift": len(found["drift"]),
        "unmatched/rejected/dead events": len(found["problems"]),
        "refunds or chargebacks applied twice": found["double"],
    }


def ratios(results: dict[str, Figures]) -> dict:
    if not {"batch", "per-event"} <= set(results):
        return {}
    batch, peer = results["batch"], results["per-event"]
    assert batch.plan is not None and peer.plan is not None
    return {
        "batch / per-event, end to end": round(
            (len(batch.plan.bodies) / batch.end_to_end_s) / (len(peer.plan.bodies) / peer.end_to_end_s), 2
        ),
        "batch / per-event, processing alone": round(
            (batch.drained / batch.drain_s) / (peer.drained / peer.drain_s), 2
        ),
    }


def verdict(results: dict[str, Figures]) -> int:
    """The targets (the batch path's), and whether any payment was applied wrongly or twice in any
    path (exit status 1)."""
    batch = results.get("batch")
    if batch is not None and batch.plan is not None and batch.stats is not None and batch.steady is not None:
        e2e = len(batch.plan.bodies) / batch.end_to_end_s
        checks = [
            ("end to end, callbacks/s", e2e, TARGET_END_TO_END_PER_S, ">="),
            ("processing alone, events/s", batch.drained / batch.drain_s, TARGET_PROCESSING_PER_S, ">="),
            ("steady intake p99, ms", latency(batch.steady)[1], TARGET_P99_MS, "<"),
        ]  # fmt: skip
        for label, value, target, op in checks:
            met = value >= target if op == ">=" else value < target
            print(f"target {label} {op} {target:.0f}: {'met' if met else 'NOT met'} ({value:.1f})")
    ok = True
    for path, figures in results.items():
        found = figures.correctness
        good = not found["wrong"] and not found["drift"] and not found["double"]
        print(f"[{path}] zero payments applied wrongly or twice: {'yes' if good else 'NO'}")
        ok = ok and good
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
