"""Payment callbacks end to end: HTTP intake -> inbox + ledger -> workers -> shipments.

    .venv/bin/python -m bench.families.payments [--events 20000] [--shipments 2000] [--duplicates 0.05]
                                                [--processes 2] [--threads 8] [--web-workers 1]
                                                [--concurrency 32] [--access-log]

Starts a real `skyport web` and `skyport worker -p N` on a database and Redis namespace of its
own (removed at the end), creates the shipments, then posts the simulator's signed callbacks
(duplicates, out-of-order deliveries, failed and refunded payments) as fast as the web process
answers, with `--concurrency` requests in flight (the simulator's keep-alive asyncio client).
Reports:

  intake       requests/s and latency p50/p99 of POST /webhooks/payments/{provider}
  end-to-end   events/s from the first POST to the last event processed
  cpu          CPU ms per callback of each role (the client, the web process, the workers, the
               database's backends, Redis) from /proc, and what the machine's cores allow at that cost
  correctness  shipments whose amount_paid differs from the expected ledger, drift, problem events
  steady       intake latency at --latency-rate callbacks/s, workers running
  alone        intake rate and latency with the workers stopped
  processing   the workers alone: callbacks stored while they were stopped, then drained by
               freshly started workers (events/s and CPU per event from the first one processed)
  peer         the same web process answering wrongly signed requests (401: HTTP, routing and the
               signature check, no database), measured in the same run: the intake's ratio to it
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

from bench.families.payments_phases import SECRET, Figures, Rig, latency, measure
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import load_average, machine_facts
from bench.support.procs import SKYPORT, Workers, free_port

TARGET_EVENTS_PER_S = 1000.0
TARGET_P99_MS = 50.0


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
    p.add_argument("--latency-events", type=int, default=1000, help="callbacks of the steady-rate phase")
    p.add_argument("--latency-rate", type=float, default=50.0, help="callbacks/s of the steady-rate phase")
    p.add_argument("--drain-events", type=int, default=10_000, help="callbacks of the processing-alone phase")
    p.add_argument("--peer-requests", type=int, default=5000, help="wrongly signed requests of the peer")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds the end-to-end phase may take")
    p.add_argument(
        "--database-url",
        default=os.environ.get("SKYPORT_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server to use (the bench creates and drops a database of its own there)",
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("SKYPORT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag = secrets.token_hex(4)
    dbname, namespace = f"skyport_bench_payments_{tag}", f"skyport-bench-payments-{tag}"
    load_before = load_average()
    print(f"skyport bench.payments {tag}: {' '.join(sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before: {load_before}", flush=True)
    with (
        redis_namespaces(args.redis_url, namespace),
        bench_database(args.database_url, dbname) as database_url,
    ):
        return run(args, database_url, dbname, namespace, load_before)


def run(args: argparse.Namespace, database_url: str, dbname: str, namespace: str, load_before: str) -> int:
    logs = Path(tempfile.mkdtemp(prefix="bench-payments-"))
    env = {
        "DATABASE_URL": database_url,
        "BROKER_URL": args.redis_url,
        "SKYPORT_BROKER_NAMESPACE": namespace,
        "PAYMENT_WEBHOOK_SECRET": SECRET,
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
    web = Workers([*SKYPORT, "web", "--port", str(port)], env, logs / "web.log")
    workers = Workers(
        [*SKYPORT, "worker", "-p", str(args.processes), "-t", str(args.threads)], env, logs / "worker.log"
    )
    rig = Rig(args, database_url, dbname, f"http://127.0.0.1:{port}", web, workers)
    try:
        figures = measure(rig)
        facts = machine_facts(database_url, args.redis_url)
    finally:
        workers.stop()
        web.stop()
    print(json.dumps({**report(args, figures, load_before), "machine": facts}, indent=2, default=str))
    return verdict(figures, logs)


def report(args: argparse.Namespace, figures: Figures, load_before: str) -> dict:
    """The figures, by label, in the order printed."""
    plan, stats, found = figures.plan, figures.stats, figures.correctness
    assert plan is not None and stats is not None and figures.warm_up is not None
    cores = os.cpu_count() or 1
    intake_rps = len(plan.bodies) / figures.intake_s
    cpu_total = sum(figures.cpu.values())
    return {
        "callbacks posted": len(plan.bodies),
        "unique events": plan.unique_events,
        "http statuses": stats.statuses,
        "http errors (first)": stats.errors[:3],
        "intake requests/s": round(intake_rps, 1),
        "intake latency p50 / p99 ms": latency(stats),
        "end-to-end callbacks/s (first POST -> last processed)": round(
            len(plan.bodies) / figures.end_to_end_s, 1
        ),
        "end-to-end seconds": round(figures.end_to_end_s, 1),
        "cpu ms per callback, end to end": figures.cpu,
        "cpu ms per callback, end to end, all roles": round(cpu_total, 3),
        f"callbacks/s {cores} cores allow at that cost": round(cores * 1000 / cpu_total, 0),
        f"steady intake at {args.latency_rate:.0f}/s: latency p50 / p99 ms": latency(figures.steady),
        f"steady intake at {args.latency_rate:.0f}/s: statuses": figures.steady.statuses,
        "intake alone (workers stopped): requests/s": round(figures.alone_rps, 1),
        "intake alone: latency p50 / p99 ms (saturated)": latency(figures.alone_sat),
        f"intake alone: latency p50 / p99 ms at {args.latency_rate:.0f}/s": latency(figures.alone_steady),
        "intake alone: cpu ms per callback": figures.alone_cpu,
        "processing alone (workers draining stored events): events/s": round(
            figures.drained / figures.drain_s, 1
        ),
        "processing alone: events drained": figures.drained,
        "processing alone: cpu ms per event": figures.drain_cpu,
        "peer: wrongly signed 401 requests/s (same web process)": round(figures.peer_rps, 1),
        "peer: cpu ms per request": figures.peer_cpu,
        "intake / peer ratio": round(intake_rps / figures.peer_rps, 2),
        "warm-up statuses": figures.warm_up.statuses,
        "inbox statuses (warm-up included)": found["statuses"],
        "shipments not matching the expected ledger": len(found["wrong"]),
        "shipments with drift": len(found["drift"]),
        "unmatched/rejected events": len(found["problems"]),
        "payment keys with more than one transaction": found["double"],
        "failed job attempts, retried (warm-up and end to end)": found["retried"],
        "completed payments == expected total": found["completed_ok"],
        "web workers / access log": (args.web_workers, args.access_log),
        "load before": load_before,
        "load after": load_average(),
    }


def verdict(figures: Figures, logs: Path) -> int:
    """The targets, and whether any payment was applied wrongly or twice (exit status 1)."""
    assert figures.plan is not None and figures.stats is not None
    e2e_rate = len(figures.plan.bodies) / figures.end_to_end_s
    p99 = latency(figures.stats)[1]
    print(
        f"target >= {TARGET_EVENTS_PER_S:.0f} events/s end-to-end: "
        f"{'met' if e2e_rate >= TARGET_EVENTS_PER_S else 'NOT met'} ({e2e_rate:.0f})"
    )
    print(
        f"target intake p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'NOT met'} "
        f"({p99:.1f})"
    )
    found = figures.correctness
    ok = not found["wrong"] and not found["drift"] and not found["double"]
    print(f"zero double-applied payments: {'yes' if ok else 'NO'}")
    print(f"logs: {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
