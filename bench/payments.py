"""Payment callbacks end to end: HTTP intake -> inbox + ledger -> workers -> shipments.

    .venv/bin/python -m bench.payments [--events 20000] [--shipments 2000] [--duplicates 0.05]
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
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from bench.proc_cpu import CpuMeter
from bench.throughput import Workers, _load, bench_database, machine_facts, redis_namespaces
from demo.payments_simulator import PostStats

SECRET = "whsec_bench"
PROVIDER = "bench"
TARGET_EVENTS_PER_S = 1000.0
TARGET_P99_MS = 50.0
# Events not processed yet (received, or waiting to be tried again).
OPEN_EVENTS = "SELECT count(*) FROM payment_events WHERE status IN ('received', 'processing')"
# Roles of the CPU split, in the report's order (proc_cpu's "enqueuer" is this process: the client).
CPU_ROLES = ("client", "web", "workers", "postgres", "redis")


class RunMeter:
    """CPU seconds of the client, the web process(es), the workers, the database's backends and
    Redis: bench.proc_cpu's meter once for the web process tree and once for the workers'."""

    def __init__(self, web: Workers, workers: Workers, dbname: str, redis_url: str) -> None:
        port = urlsplit(redis_url).port or 6379
        self.web = CpuMeter([web.proc.pid] if web.proc else [], dbname, port)
        self.workers = CpuMeter([workers.proc.pid] if workers.proc else [], dbname, None)

    def snapshot(self) -> tuple[dict, dict]:
        return self.web.snapshot(), self.workers.snapshot()

    def per_callback_ms(self, before: tuple[dict, dict], after: tuple[dict, dict], count: int) -> dict:
        web = CpuMeter.per_job_ms(before[0], after[0], count)
        workers = CpuMeter.per_job_ms(before[1], after[1], count)
        split = {
            "client": web["enqueuer"],
            "web": web["workers"],
            "workers": workers["workers"],
            "postgres": web["postgres"],
            "redis": web["redis"],
        }
        return {role: round(split[role], 3) for role in CPU_ROLES}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float = 30.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _wait_workers(database_url: str, workers: Workers, processes: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 60
        while conn.execute("SELECT count(*) FROM workers").fetchone()[0] < processes:
            workers.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not start:\n{workers.log_tail()}")
            time.sleep(0.2)


def _wait_processed(database_url: str, workers: Workers, start: float, timeout_s: float) -> float:
    """Poll until no event is received/processing; returns the monotonic time it saw that."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            open_count = conn.execute(OPEN_EVENTS).fetchone()[0]
            now = time.monotonic()
            if open_count == 0:
                return now
            if now - start > timeout_s:
                raise RuntimeError(f"{open_count} events still open after {timeout_s:.0f} s")
            workers.check_alive()
            time.sleep(0.05)


def _drain(database_url: str, workers: Workers, meter: RunMeter, timeout_s: float) -> tuple[int, float, dict]:
    """Time the workers draining the open events from the first one processed to the last:
    (events drained, seconds, CPU ms per event)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        total = conn.execute(OPEN_EVENTS).fetchone()[0]
        deadline = time.monotonic() + timeout_s
        while (left := conn.execute(OPEN_EVENTS).fetchone()[0]) == total:
            workers.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no event processed within {timeout_s:.0f} s:\n{workers.log_tail()}")
            time.sleep(0.01)
    before, start = meter.snapshot(), time.monotonic()
    end = _wait_processed(database_url, workers, start, timeout_s)
    return left, end - start, meter.per_callback_ms(before, meter.snapshot(), left)


def _latency(stats: PostStats) -> tuple[float, float]:
    return round(stats.percentile_ms(0.5), 1), round(stats.percentile_ms(0.99), 1)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    load_before = _load()
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
        "REDIS_URL": args.redis_url,
        "SKYPORT_BROKER_NAMESPACE": namespace,
        "PAYMENT_WEBHOOK_SECRET": SECRET,
        "SKYPORT_SECRET_KEY": "bench",
        "WEB_CONCURRENCY": str(args.web_workers),
        "SKYPORT_WEB_ACCESS_LOG": "1" if args.access_log else "0",
        # The runtime skips a retried job's message consumed before the relay committed; the
        # lifeline publishes it again after this (default 300 s). See RESULTS.md.
        "SKYPORT_REPUBLISH_AFTER_S": "5",
    }
    os.environ.update(env)
    import config

    config.get.cache_clear()
    from demo.payments_simulator import create_demo_shipments, mismatches, plan_events, post_events
    from jobs import payments

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    web = Workers([sys.executable, "-m", "workers.cli", "web", "--port", str(port)], env, logs / "web.log")
    workers = Workers(
        [sys.executable, "-m", "workers.cli", "worker", "-p", str(args.processes), "-t", str(args.threads)],
        env,
        logs / "worker.log",
    )
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            shipments = create_demo_shipments(conn, args.shipments, seed=1)
            warm_ships = create_demo_shipments(conn, 20, seed=4)
        plan = plan_events(
            shipments,
            events=args.events,
            duplicates=args.duplicates,
            out_of_order=0.1,
            failures=0.05,
            refunds=0.05,
            seed=1,
        )
        web.start()
        _wait_http(f"{url}/healthz")
        workers.start()
        _wait_workers(database_url, workers, args.processes)
        meter = RunMeter(web, workers, dbname, args.redis_url)
        # Warm-up (connections, prepared statements, the workers' first jobs), then drained.
        warm_up = post_events(url, PROVIDER, SECRET, plan_events(warm_ships, events=300, seed=4).bodies)
        _wait_processed(database_url, workers, time.monotonic(), 120)
        peer_before = meter.snapshot()
        peer_start = time.monotonic()
        peer = post_events(
            url,
            PROVIDER,
            "not-the-secret",
            [{"id": "evt_peer"}] * args.peer_requests,
            concurrency=args.concurrency,
        )
        peer_rps = args.peer_requests / (time.monotonic() - peer_start)
        peer_cpu = meter.per_callback_ms(peer_before, meter.snapshot(), args.peer_requests)
        assert set(peer.statuses) == {401}, peer.statuses

        print(
            f"posting {len(plan.bodies)} callbacks ({plan.unique_events} unique events, {plan.payments} "
            f"payments) for {len(shipments)} shipments, {args.concurrency} in flight; web x "
            f"{args.web_workers} + {args.processes} worker processes x {args.threads} threads",
            flush=True,
        )
        before = meter.snapshot()
        start = time.monotonic()
        stats = post_events(url, PROVIDER, SECRET, plan.bodies, concurrency=args.concurrency)
        intake_s = time.monotonic() - start
        end_to_end_s = _wait_processed(database_url, workers, start, args.timeout) - start
        cpu = meter.per_callback_ms(before, meter.snapshot(), len(plan.bodies))
        with psycopg.connect(database_url, autocommit=True) as conn:
            wrong = mismatches(conn, plan.expected_paid)
            drift = payments.drift(conn)
            problems = payments.problem_events(conn)
            statuses = payments.count_by_status(conn)
            completed = conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM payment_transactions "
                "WHERE transaction_status = 'completed' AND shipment_id = ANY(%s)",
                (list(plan.expected_paid),),
            ).fetchone()[0]
            # Attempts that failed and were retried: mostly events that arrived before the event
            # they follow (a refund before its payment completed) and waited with backoff.
            retried = conn.execute("SELECT count(*) FROM job_attempts WHERE outcome = 'failed'").fetchone()[0]
            double = conn.execute(
                "SELECT count(*) FROM (SELECT idempotency_key FROM payment_transactions GROUP BY 1 "
                "HAVING count(*) > 1) d"
            ).fetchone()[0]
            # Intake latency at a steady rate below saturation (the workers busy with it too).
            extra = create_demo_shipments(conn, max(1, args.latency_events // 10), seed=2)
        steady = plan_events(extra, events=args.latency_events, duplicates=args.duplicates, seed=2)
        steady_stats = post_events(
            url, PROVIDER, SECRET, steady.bodies, rate=args.latency_rate, concurrency=args.concurrency
        )
        # Intake alone: the workers stopped, so only the web process, the client and the servers run.
        workers.stop()
        with psycopg.connect(database_url, autocommit=True) as conn:
            alone_ships = create_demo_shipments(conn, max(1, args.latency_events // 5), seed=3)
        alone = plan_events(alone_ships, events=2 * args.latency_events, duplicates=args.duplicates, seed=3)
        half = len(alone.bodies) // 2
        alone_before = meter.snapshot()
        t0 = time.monotonic()
        alone_sat = post_events(url, PROVIDER, SECRET, alone.bodies[:half], concurrency=args.concurrency)
        alone_rps = half / (time.monotonic() - t0)
        alone_cpu = meter.per_callback_ms(alone_before, meter.snapshot(), half)
        alone_steady = post_events(
            url, PROVIDER, SECRET, alone.bodies[half:], rate=args.latency_rate, concurrency=args.concurrency
        )
        # Processing alone: callbacks stored while the workers are stopped, then drained.
        with psycopg.connect(database_url, autocommit=True) as conn:
            drain_ships = create_demo_shipments(conn, max(1, args.drain_events // 10), seed=5)
        drain_plan = plan_events(drain_ships, events=args.drain_events, duplicates=args.duplicates, seed=5)
        post_events(url, PROVIDER, SECRET, drain_plan.bodies, concurrency=args.concurrency)
        workers.start()
        drained, drain_s, drain_cpu = _drain(
            database_url, workers, RunMeter(web, workers, dbname, args.redis_url), args.timeout
        )
        facts = machine_facts(database_url, args.redis_url)
    finally:
        workers.stop()
        web.stop()

    cores = os.cpu_count() or 1
    intake_rps = len(plan.bodies) / intake_s
    e2e_rate = len(plan.bodies) / end_to_end_s
    p50, p99 = _latency(stats)
    cpu_total = sum(cpu.values())
    report = {
        "callbacks posted": len(plan.bodies),
        "unique events": plan.unique_events,
        "http statuses": stats.statuses,
        "http errors (first)": stats.errors[:3],
        "intake requests/s": round(intake_rps, 1),
        "intake latency p50 / p99 ms": (p50, p99),
        "end-to-end callbacks/s (first POST -> last processed)": round(e2e_rate, 1),
        "end-to-end seconds": round(end_to_end_s, 1),
        "cpu ms per callback, end to end": cpu,
        "cpu ms per callback, end to end, all roles": round(cpu_total, 3),
        f"callbacks/s {cores} cores allow at that cost": round(cores * 1000 / cpu_total, 0),
        f"steady intake at {args.latency_rate:.0f}/s: latency p50 / p99 ms": _latency(steady_stats),
        f"steady intake at {args.latency_rate:.0f}/s: statuses": steady_stats.statuses,
        "intake alone (workers stopped): requests/s": round(alone_rps, 1),
        "intake alone: latency p50 / p99 ms (saturated)": _latency(alone_sat),
        f"intake alone: latency p50 / p99 ms at {args.latency_rate:.0f}/s": _latency(alone_steady),
        "intake alone: cpu ms per callback": alone_cpu,
        "processing alone (workers draining stored events): events/s": round(drained / drain_s, 1),
        "processing alone: events drained": drained,
        "processing alone: cpu ms per event": drain_cpu,
        "peer: wrongly signed 401 requests/s (same web process)": round(peer_rps, 1),
        "peer: cpu ms per request": peer_cpu,
        "intake / peer ratio": round(intake_rps / peer_rps, 2),
        "warm-up statuses": warm_up.statuses,
        "inbox statuses (warm-up included)": statuses,
        "shipments not matching the expected ledger": len(wrong),
        "shipments with drift": len(drift),
        "unmatched/rejected events": len(problems),
        "payment keys with more than one transaction": double,
        "failed job attempts, retried (warm-up and end to end)": retried,
        "completed payments == expected total": completed == sum(plan.expected_paid.values(), Decimal(0)),
        "web workers / access log": (args.web_workers, args.access_log),
        "load before": load_before,
        "load after": _load(),
    }
    print(json.dumps({**report, "machine": facts}, indent=2, default=str))
    print(
        f"target >= {TARGET_EVENTS_PER_S:.0f} events/s end-to-end: "
        f"{'met' if e2e_rate >= TARGET_EVENTS_PER_S else 'NOT met'} ({e2e_rate:.0f})"
    )
    print(
        f"target intake p99 < {TARGET_P99_MS:.0f} ms: {'met' if p99 < TARGET_P99_MS else 'NOT met'} "
        f"({p99:.1f})"
    )
    ok = not wrong and not drift and not double
    print(f"zero double-applied payments: {'yes' if ok else 'NO'}")
    print(f"logs: {logs}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
