"""Payment callbacks end to end: HTTP intake -> inbox + ledger -> workers -> shipments.

    .venv/bin/python -m bench.payments [--events 20000] [--shipments 2000] [--duplicates 0.05]
                                       [--processes 2] [--threads 8] [--concurrency 32]

Starts a real `skyport web` and `skyport worker -p N` on a database and Redis namespace of its
own (removed at the end), creates the shipments, then posts the simulator's signed callbacks
(duplicates, out-of-order deliveries, failed and refunded payments) as fast as the web process
answers, with `--concurrency` requests in flight. Reports:

  intake       requests/s and latency p50/p99 of POST /webhooks/payments/{provider}
  end-to-end   events/s from the first POST to the last event processed
  correctness  shipments whose amount_paid differs from the expected ledger, drift, problem events
  steady       intake latency at --latency-rate callbacks/s, workers running
  alone        intake rate and latency with the workers stopped
  peer         the same web process answering unsigned requests (401: HTTP + middleware, no
               database), measured in the same run: the intake's ratio to the HTTP ceiling
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import redis
from psycopg import sql

from db import migrate

REPO = Path(__file__).resolve().parent.parent
SECRET = "whsec_bench"
PROVIDER = "bench"
TARGET_EVENTS_PER_S = 1000.0
TARGET_P99_MS = 50.0


class Workers:
    """A command in a process group of its own, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.argv[3]} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the group, SIGKILL to whatever is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def machine_facts(database_url: str, redis_url: str) -> dict[str, str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?"
    )
    mem_kib = next(
        int(ln.split()[1])
        for ln in Path("/proc/meminfo").read_text().splitlines()
        if ln.startswith("MemTotal:")
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        pg_settings = ", ".join(
            f"{name}={conn.execute(sql.SQL('SHOW {}').format(sql.Identifier(name))).fetchone()[0]}"
            for name in ("synchronous_commit", "autovacuum", "shared_buffers")
        )
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "postgresql": f"{pg_version} ({pg_settings})",
        "redis": redis.Redis.from_url(redis_url).info("server")["redis_version"],
        "python": platform.python_version(),
    }


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")


def _peer_unsigned(url: str, count: int, concurrency: int) -> float:
    """Requests/s of unsigned POSTs (401 without touching the database)."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    local = threading.local()
    endpoint = f"{url}/webhooks/payments/{PROVIDER}"

    def send(_: int) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(timeout=30)
        return local.client.post(endpoint, content=b"{}").status_code

    start = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(send, range(count)))
    assert set(statuses) == {401}, set(statuses)
    return count / (time.monotonic() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--shipments", type=int, default=2_000)
    p.add_argument("--duplicates", type=float, default=0.05)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency-events", type=int, default=1000, help="callbacks of the steady-rate phase")
    p.add_argument("--latency-rate", type=float, default=50.0, help="callbacks/s of the steady-rate phase")
    p.add_argument(
        "--admin-url",
        default=os.environ.get("SKYPORT_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    p.add_argument(
        "--redis-url", default=os.environ.get("SKYPORT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = p.parse_args(argv)

    dbname = f"skyport_bench_payments_{secrets.token_hex(4)}"
    namespace = f"skyport-bench-payments-{secrets.token_hex(4)}"
    database_url = urlunsplit(urlsplit(args.admin_url)._replace(path=f"/{dbname}"))
    with psycopg.connect(args.admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    logs = Path(tempfile.mkdtemp(prefix="bench-payments-"))
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": args.redis_url,
        "SKYPORT_BROKER_NAMESPACE": namespace,
        "PAYMENT_WEBHOOK_SECRET": SECRET,
        "SKYPORT_SECRET_KEY": "bench",
        # The runtime skips a retried job's message consumed before the relay committed; the
        # lifeline publishes it again after this (default 300 s). See RESULTS.md.
        "SKYPORT_REPUBLISH_AFTER_S": "5",
    }
    os.environ.update(env)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    web = Workers([sys.executable, "-m", "workers.cli", "web", "--port", str(port)], env, logs / "web.log")
    workers = Workers(
        [sys.executable, "-m", "workers.cli", "worker", "-p", str(args.processes), "-t", str(args.threads)],
        env,
        logs / "worker.log",
    )
    load_before = _load()
    try:
        migrate.upgrade("heads", database_url)
        from db import settings
        from jobs.payments.simulator import create_demo_shipments, mismatches, plan_events, post_events

        settings.get.cache_clear()
        with psycopg.connect(database_url, autocommit=True) as conn:
            shipments = create_demo_shipments(conn, args.shipments, seed=1)
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
        with psycopg.connect(database_url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM workers").fetchone()[0] < args.processes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"workers did not start:\n{workers.log_tail()}")
                time.sleep(0.2)
        peer_rps = _peer_unsigned(url, 3000, args.concurrency)

        print(
            f"posting {len(plan.bodies)} callbacks ({plan.unique_events} unique events, {plan.payments} "
            f"payments) for {len(shipments)} shipments, {args.concurrency} in flight; "
            f"web + {args.processes} worker processes x {args.threads} threads"
        )
        start = time.monotonic()
        stats = post_events(url, PROVIDER, SECRET, plan.bodies, concurrency=args.concurrency)
        intake_s = time.monotonic() - start
        with psycopg.connect(database_url, autocommit=True) as conn:
            while True:
                open_count = conn.execute(
                    "SELECT count(*) FROM payment_events WHERE status IN ('received', 'processing')"
                ).fetchone()[0]
                if open_count == 0:
                    break
                if time.monotonic() - start > 600:
                    raise RuntimeError(f"{open_count} events still open after 600 s")
                workers.check_alive()
                time.sleep(0.05)
            end_to_end_s = time.monotonic() - start
            wrong = mismatches(conn, plan.expected_paid)
            from jobs import payments

            drift = payments.drift(conn)
            problems = payments.problem_events(conn)
            statuses = payments.count_by_status(conn)
            completed = conn.execute(
                "SELECT coalesce(sum(amount), 0) FROM payment_transactions "
                "WHERE transaction_status = 'completed'"
            ).fetchone()[0]
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
        t0 = time.monotonic()
        alone_sat = post_events(url, PROVIDER, SECRET, alone.bodies[:half], concurrency=args.concurrency)
        alone_rps = half / (time.monotonic() - t0)
        alone_steady = post_events(
            url, PROVIDER, SECRET, alone.bodies[half:], rate=args.latency_rate, concurrency=args.concurrency
        )
        facts = machine_facts(database_url, args.redis_url)
        intake_rps = len(plan.bodies) / intake_s
        e2e_rate = len(plan.bodies) / end_to_end_s
        p50, p99 = stats.percentile_ms(0.50), stats.percentile_ms(0.99)
        report = {
            "callbacks posted": len(plan.bodies),
            "unique events": plan.unique_events,
            "http statuses": stats.statuses,
            "intake requests/s": round(intake_rps, 1),
            "intake latency p50 ms": round(p50, 1),
            "intake latency p99 ms": round(p99, 1),
            "end-to-end callbacks/s (first POST -> last processed)": round(e2e_rate, 1),
            "end-to-end seconds": round(end_to_end_s, 1),
            f"steady intake at {args.latency_rate:.0f}/s: latency p50 ms": round(
                steady_stats.percentile_ms(0.5), 1
            ),
            f"steady intake at {args.latency_rate:.0f}/s: latency p99 ms": round(
                steady_stats.percentile_ms(0.99), 1
            ),
            f"steady intake at {args.latency_rate:.0f}/s: statuses": steady_stats.statuses,
            "intake alone (workers stopped): requests/s": round(alone_rps, 1),
            "intake alone: latency p50 / p99 ms (saturated)": (
                round(alone_sat.percentile_ms(0.5), 1),
                round(alone_sat.percentile_ms(0.99), 1),
            ),
            f"intake alone: latency p50 / p99 ms at {args.latency_rate:.0f}/s": (
                round(alone_steady.percentile_ms(0.5), 1),
                round(alone_steady.percentile_ms(0.99), 1),
            ),
            "peer: unsigned 401 requests/s (same web process)": round(peer_rps, 1),
            "intake / peer ratio": round(intake_rps / peer_rps, 2),
            "inbox statuses": statuses,
            "shipments not matching the expected ledger": len(wrong),
            "shipments with drift": len(drift),
            "unmatched/rejected events": len(problems),
            "payment keys with more than one transaction": double,
            "completed payments == expected total": completed == sum(plan.expected_paid.values(), Decimal(0)),
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
        print(f"zero double-applied payments: {'yes' if not wrong and not drift and not double else 'NO'}")
        return 0 if not wrong and not drift else 1
    finally:
        workers.stop()
        web.stop()
        client = redis.Redis.from_url(args.redis_url)
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        with psycopg.connect(args.admin_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        print(f"logs: {logs}")


if __name__ == "__main__":
    sys.exit(main())
