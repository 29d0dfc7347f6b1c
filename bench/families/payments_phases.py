"""The phases of the payment callbacks bench (bench/families/payments.py), run once for each
processing path on a web process and its workers of its own: warm-up, end to end (and its
correctness), steady rate, processing alone. Each phase adds its figures to a `Figures`."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
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
    """What the phases run against: the web process at `url`, the workers, the bench's database,
    and the processing path (PAYMENT_PROCESSING) both run with."""

    args: argparse.Namespace
    database_url: str
    dbname: str
    url: str
    web: Workers
    workers: Workers
    path: str
    seed: int
    meter: RunMeter | None = None


@dataclass
class Figures:
    path: str = ""
    plan: Plan | None = None
    shipments: int = 0
    warm_up: PostStats | None = None
    stats: PostStats | None = None  # end to end
    intake_s: float = 0.0
    end_to_end_s: float = 0.0
    cpu: dict = field(default_factory=dict)
    correctness: dict[str, Any] = field(default_factory=dict)
    steady: PostStats | None = None
    drained: int = 0
    drain_s: float = 0.0
    drain_cpu: dict = field(default_factory=dict)
    jobs: int = 0


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
            time.sleep(0.02)


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
            time.sleep(0.005)
    before, start = meter.snapshot(), time.monotonic()
    end = _wait_processed(database_url, workers, start, timeout_s)
    return left, end - start, meter.per_callback_ms(before, meter.snapshot(), left)


def latency(stats: PostStats) -> tuple[float, float]:
    return round(stats.percentile_ms(0.5), 1), round(stats.percentile_ms(0.99), 1)


def _plan(rig: Rig, shipments: int, events: int, offset: int) -> Plan:
    """A plan over new shipments: failures, partial refunds and disputes, duplicates, out of order."""
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        ships = create_demo_shipments(conn, max(1, shipments), seed=rig.seed + offset)
    return plan_events(
        ships,
        events=events,
        duplicates=rig.args.duplicates,
        out_of_order=0.1,
        failures=0.05,
        refunds=0.05,
        disputes=0.02,
        seed=rig.seed + offset,
    )


def measure(rig: Rig) -> Figures:
    """Every phase, in order; the workers are stopped before the processing-alone phase, then
    started again on the events stored meanwhile."""
    args, figures = rig.args, Figures(path=rig.path)
    plan = _plan(rig, args.shipments, args.events, 1)
    figures.plan, figures.shipments = plan, args.shipments
    start(rig)
    # Warm-up (connections, prepared statements, the workers' first jobs), then drained.
    figures.warm_up = post_events(rig.url, PROVIDER, SECRET, _plan(rig, 20, 300, 4).bodies)
    _wait_processed(rig.database_url, rig.workers, time.monotonic(), 120)
    end_to_end(rig, plan, figures)
    figures.steady = post_events(
        rig.url, PROVIDER, SECRET, _plan(rig, args.latency_events // 10, args.latency_events, 2).bodies,
        rate=args.latency_rate, concurrency=args.concurrency,
    )  # fmt: skip
    _wait_processed(rig.database_url, rig.workers, time.monotonic(), args.timeout)
    rig.workers.stop()
    processing_alone(rig, figures)
    with psycopg.connect(rig.database_url, autocommit=True) as conn:
        figures.jobs = conn.execute(
            "SELECT count(*) FROM jobs WHERE actor IN ('drain_payment_events', 'process_payment_event')"
        ).fetchone()[0]
    return figures


def start(rig: Rig) -> None:
    rig.web.start()
    wait_http(f"{rig.url}/healthz")
    rig.workers.start()
    _wait_workers(rig.database_url, rig.workers, rig.args.processes)
    rig.meter = RunMeter(rig.web, rig.workers, rig.dbname, rig.args.redis_url)


def end_to_end(rig: Rig, plan: Plan, figures: Figures) -> None:
    """The plan's callbacks as fast as the web process answers, until the last event is processed."""
    args, meter = rig.args, rig.meter
    assert meter is not None
    print(
        f"[{rig.path}] posting {len(plan.bodies)} callbacks ({plan.unique_events} unique events, "
        f"{plan.payments} payments) for {figures.shipments} shipments, {args.concurrency} in flight; "
        f"web x {args.web_workers} + {args.processes} worker processes x {args.threads} threads",
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
    """The shipments against the plan, drift, problem events, money rows applied twice."""
    from jobs import payments

    with psycopg.connect(database_url, autocommit=True) as conn:
        return {
            "wrong": mismatches(conn, plan.expected_paid),
            "drift": payments.drift(conn),
            "problems": payments.problem_events(conn),
            "statuses": payments.count_by_status(conn),
            # A key is unique in payment_transactions: an event applied twice would show as a
            # second refund or chargeback row for one refund or dispute id, or as drift.
            "double": conn.execute(
                "SELECT count(*) FROM (SELECT shipment_id, transaction_type, external_transaction_id"
                "  FROM payment_transactions WHERE transaction_type IN ('refund', 'chargeback')"
                " GROUP BY 1, 2, 3 HAVING count(*) > 1) d"
            ).fetchone()[0],
        }


def processing_alone(rig: Rig, figures: Figures) -> None:
    """Callbacks stored while the workers are stopped, then drained by freshly started workers."""
    args = rig.args
    drain_plan = _plan(rig, args.drain_events // 10, args.drain_events, 5)
    post_events(rig.url, PROVIDER, SECRET, drain_plan.bodies, concurrency=args.concurrency)
    rig.workers.start()
    figures.drained, figures.drain_s, figures.drain_cpu = _drain(
        rig.database_url,
        rig.workers,
        RunMeter(rig.web, rig.workers, rig.dbname, args.redis_url),
        args.timeout,
    )
