"""The phases of the payment callbacks bench (bench/families/payments.py), in the order it runs
them on one web process and its workers: warm-up, peer, end to end (and its correctness), steady
rate, intake alone, processing alone. Each phase adds its figures to a `Figures`."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import psycopg

from bench.support.cpu import CpuMeter
from bench.support.procs import Workers, wait_http
from demo.payments_simulator import (
    Plan,
    PostStats,
    create_demo_shipments,
    mismatches,
    plan_events,
    post_events,
)

SECRET = "whsec_bench"
PROVIDER = "bench"
# Events not processed yet (received, or waiting to be tried again).
OPEN_EVENTS = "SELECT count(*) FROM payment_events WHERE status IN ('received', 'processing')"
# Roles of the CPU split, in the report's order (the CPU meter's "enqueuer" is this process: the client).
CPU_ROLES = ("client", "web", "workers", "postgres", "redis")


class RunMeter:
    """CPU seconds of the client, the web process(es), the workers, the database's backends and
    Redis: bench.support.cpu's meter once for the web process tree and once for the workers'."""

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


@dataclass
class Rig:
    """What the phases run against: the web process at `url`, the workers, the bench's database."""

    args: argparse.Namespace
    database_url: str
    dbname: str
    url: str
    web: Workers
    workers: Workers
    meter: RunMeter | None = None


@dataclass
class Figures:
    plan: Plan | None = None
    shipments: int = 0
    warm_up: PostStats | None = None
    peer_rps: float = 0.0
    peer_cpu: dict = field(default_factory=dict)
    stats: PostStats | None = None  # end to end
    intake_s: float = 0.0
    end_to_end_s: float = 0.0
    cpu: dict = field(default_factory=dict)
    correctness: dict[str, Any] = field(default_factory=dict)
    steady: PostStats | None = None
    alone_rps: float = 0.0
    alone_sat: PostStats | None = None
    alone_cpu: dict = field(default_factory=dict)
    alone_steady: PostStats | None = None
    drained: int = 0
    drain_s: float = 0.0
    drain_cpu: dict = field(default_factory=dict)


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


def latency(stats: PostStats) -> tuple[float, float]:
    return round(stats.percentile_ms(0.5), 1), round(stats.percentile_ms(0.99), 1)


def measure(rig: Rig) -> Figures:
    """Every phase, in order; the workers are stopped for the intake-alone phase, then started again."""
    args, figures = rig.args, Figures()
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
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
    figures.plan, figures.shipments = plan, len(shipments)
    start(rig)
    # Warm-up (connections, prepared statements, the workers' first jobs), then drained.
    figures.warm_up = post_events(
        rig.url, PROVIDER, SECRET, plan_events(warm_ships, events=300, seed=4).bodies
    )
    _wait_processed(rig.database_url, rig.workers, time.monotonic(), 120)
    peer(rig, figures)
    end_to_end(rig, plan, figures)
    steady(rig, figures)
    # Intake alone: the workers stopped, so only the web process, the client and the servers run.
    rig.workers.stop()
    intake_alone(rig, figures)
    processing_alone(rig, figures)
    return figures


def start(rig: Rig) -> None:
    rig.web.start()
    wait_http(f"{rig.url}/healthz")
    rig.workers.start()
    _wait_workers(rig.database_url, rig.workers, rig.args.processes)
    rig.meter = RunMeter(rig.web, rig.workers, rig.dbname, rig.args.redis_url)


def peer(rig: Rig, figures: Figures) -> None:
    """Wrongly signed requests (401: HTTP, routing and the signature check, no database)."""
    assert rig.meter is not None
    peer_before = rig.meter.snapshot()
    peer_start = time.monotonic()
    answers = post_events(
        rig.url,
        PROVIDER,
        "not-the-secret",
        [{"id": "evt_peer"}] * rig.args.peer_requests,
        concurrency=rig.args.concurrency,
    )
    figures.peer_rps = rig.args.peer_requests / (time.monotonic() - peer_start)
    figures.peer_cpu = rig.meter.per_callback_ms(peer_before, rig.meter.snapshot(), rig.args.peer_requests)
    assert set(answers.statuses) == {401}, answers.statuses


def end_to_end(rig: Rig, plan: Plan, figures: Figures) -> None:
    """The plan's callbacks as fast as the web process answers, until the last event is processed."""
    args, meter = rig.args, rig.meter
    assert meter is not None
    print(
        f"posting {len(plan.bodies)} callbacks ({plan.unique_events} unique events, {plan.payments} "
        f"payments) for {figures.shipments} shipments, {args.concurrency} in flight; web x "
        f"{args.web_workers} + {args.processes} worker processes x {args.threads} threads",
        flush=True,
    )
    before = meter.snapshot()
    started = time.monotonic()
    figures.stats = post_events(rig.url, PROVIDER, SECRET, plan.bodies, concurrency=args.concurrency)
    figures.intake_s = time.monotonic() - started
    figures.end_to_end_s = _wait_processed(rig.database_url, rig.workers, started, args.timeout) - started
    figures.cpu = meter.per_callback_ms(before, meter.snapshot(), len(plan.bodies))
    figures.correctness = correctness(rig.database_url, plan)


def correctness(database_url: str, plan: Plan) -> dict[str, Any]:
    """The shipments against the plan, drift, problem events, double payments, retried attempts."""
    from jobs import payments

    with psycopg.connect(database_url, autocommit=True) as conn:
        completed = conn.execute(
            "SELECT coalesce(sum(amount), 0) FROM payment_transactions "
            "WHERE transaction_status = 'completed' AND shipment_id = ANY(%s)",
            (list(plan.expected_paid),),
        ).fetchone()[0]
        return {
            "wrong": mismatches(conn, plan.expected_paid),
            "drift": payments.drift(conn),
            "problems": payments.problem_events(conn),
            "statuses": payments.count_by_status(conn),
            "completed_ok": completed == sum(plan.expected_paid.values(), Decimal(0)),
            # Attempts that failed and were retried: mostly events that arrived before the event
            # they follow (a refund before its payment completed) and waited with backoff.
            "retried": conn.execute("SELECT count(*) FROM job_attempts WHERE outcome = 'failed'").fetchone()[
                0
            ],
            "double": conn.execute(
                "SELECT count(*) FROM (SELECT idempotency_key FROM payment_transactions GROUP BY 1 "
                "HAVING count(*) > 1) d"
            ).fetchone()[0],
        }


def steady(rig: Rig, figures: Figures) -> None:
    """Intake latency at a steady rate below saturation (the workers busy with it too)."""
    args = rig.args
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        extra = create_demo_shipments(conn, max(1, args.latency_events // 10), seed=2)
    plan = plan_events(extra, events=args.latency_events, duplicates=args.duplicates, seed=2)
    figures.steady = post_events(
        rig.url, PROVIDER, SECRET, plan.bodies, rate=args.latency_rate, concurrency=args.concurrency
    )


def intake_alone(rig: Rig, figures: Figures) -> None:
    """The workers stopped: half the callbacks saturated, half at the steady rate."""
    args, meter = rig.args, rig.meter
    assert meter is not None
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        alone_ships = create_demo_shipments(conn, max(1, args.latency_events // 5), seed=3)
    alone = plan_events(alone_ships, events=2 * args.latency_events, duplicates=args.duplicates, seed=3)
    half = len(alone.bodies) // 2
    alone_before = meter.snapshot()
    t0 = time.monotonic()
    figures.alone_sat = post_events(
        rig.url, PROVIDER, SECRET, alone.bodies[:half], concurrency=args.concurrency
    )
    figures.alone_rps = half / (time.monotonic() - t0)
    figures.alone_cpu = meter.per_callback_ms(alone_before, meter.snapshot(), half)
    figures.alone_steady = post_events(
        rig.url, PROVIDER, SECRET, alone.bodies[half:], rate=args.latency_rate, concurrency=args.concurrency
    )


def processing_alone(rig: Rig, figures: Figures) -> None:
    """Callbacks stored while the workers are stopped, then drained by freshly started workers."""
    args = rig.args
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        drain_ships = create_demo_shipments(conn, max(1, args.drain_events // 10), seed=5)
    drain_plan = plan_events(drain_ships, events=args.drain_events, duplicates=args.duplicates, seed=5)
    post_events(rig.url, PROVIDER, SECRET, drain_plan.bodies, concurrency=args.concurrency)
    rig.workers.start()
    figures.drained, figures.drain_s, figures.drain_cpu = _drain(
        rig.database_url,
        rig.workers,
        RunMeter(rig.web, rig.workers, rig.dbname, args.redis_url),
        args.timeout,
    )
