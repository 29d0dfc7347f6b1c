"""The soak's run: its processes (web, scheduler, supervised workers), its load threads and the
kills, the load phase, the drain and the stop (what it prints: report.py)."""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench.soak.load import WEBHOOK_SECRET, AppLoadThread, NotificationThread, WebhookThread
from bench.soak.procs import Killer, RssSampler, Slot, Supervisor
from bench.soak.report import Progress, final_report
from bench.support.procs import SKYPORT, free_port, wait_http
from tests.support import scalar, wait_for

# After the drain, how long the jobs enqueued meanwhile (scheduler ticks) may take to finish.
FINAL_JOBS_TIMEOUT_S = 120.0


class _TimedReceipts(list):
    """HttpProvider.received with the time of each delivery: (monotonic s, Idempotency-Key)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[float, str]] = []

    def append(self, key: str) -> None:
        super().append(key)
        self.times.append((time.monotonic(), key))


class Soak:
    """One soak run: its processes, its load, its phases."""

    def __init__(self, args: argparse.Namespace, database_url: str, namespace: str, log_dir: Path) -> None:
        self.args = args
        self.database_url = database_url
        self.namespace = namespace
        self.log_dir = log_dir
        self.stop_load = threading.Event()
        self.stop_procs = threading.Event()
        self.port = free_port()
        self.provider: Any = None
        self.killer: Killer | None = None
        self.started_at, self.started_wall = time.monotonic(), time.time()

    # ---- set-up -----------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "BROKER_URL": self.args.redis_url,
            "SKYPORT_BROKER_NAMESPACE": self.namespace,
            "SKYPORT_EXTRA_MODULES": "bench.soak.actors",
            "PAYMENT_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "SKYPORT_SECRET_KEY": "soak",
        }
        if self.provider is not None:
            env["SKYPORT_SMS_URL"] = self.provider.url
        return env

    def start(self) -> None:
        if not self.args.no_http:
            from tests.notify.servers import HttpProvider

            self.provider = HttpProvider().__enter__()
            self.provider.received = _TimedReceipts()
        env = self.environment()
        os.environ.update(env)
        import config

        config.get.cache_clear()
        from bench.soak.actors import EFFECTS_DDL  # declares actors on the broker: after the settings

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(EFFECTS_DDL)
        self.start_processes(env)
        from jobs.registry import broker

        self.queues = sorted(broker.get_declared_queues())
        self.start_load()

    def start_processes(self, env: dict[str, str]) -> None:
        """The web process, then the scheduler and the worker slots; until every worker heartbeats."""
        self.web = Slot("web", [*SKYPORT, "web", "--port", str(self.port)], env, self.log_dir)
        self.scheduler = Slot("scheduler", [*SKYPORT, "scheduler"], env, self.log_dir)
        worker_argv = [*SKYPORT, "worker", "-p", str(self.args.processes), "-t", str(self.args.threads)]
        self.workers = [
            Slot(f"worker{i + 1}", worker_argv, env, self.log_dir) for i in range(self.args.workers)
        ]
        self.web.process.start()
        wait_http(f"http://127.0.0.1:{self.port}/healthz", 60)
        for slot in [self.scheduler, *self.workers]:
            slot.process.start()
        expected = self.args.workers * self.args.processes
        wait_for(
            lambda: scalar(self.database_url, "SELECT count(*) FROM workers") >= expected,
            90,
            0.2,
            f"{expected} worker processes to heartbeat",
        )

    def start_load(self) -> None:
        """The supervisor, the RSS sampler, the killer and the three load threads; the clock starts."""
        self.supervisor = Supervisor(self.workers, self.stop_procs)
        self.sampler = RssSampler(
            [self.web, self.scheduler, *self.workers], self.args.sample_s, self.stop_procs
        )
        if self.args.kill_every_min > 0:
            self.killer = Killer(
                self.workers, self.args.kill_every_min * 60, self.database_url, self.stop_load, self.args.seed
            )
        seed = self.args.seed
        self.app = AppLoadThread(
            self.args.jobs_per_s, self.args.poison_every_s, self.database_url, self.stop_load, seed
        )
        self.webhooks = WebhookThread(
            f"http://127.0.0.1:{self.port}", self.args.webhooks_per_s, self.database_url, self.stop_load, seed
        )
        self.notifications = NotificationThread(
            self.database_url,
            self.args.notifications_per_s,
            self.provider,
            self.args.http_share,
            self.args.http_fail_share,
            self.stop_load,
            seed,
        )
        self.started_at, self.started_wall = time.monotonic(), time.time()
        for thread in (
            self.supervisor,
            self.sampler,
            self.killer,
            self.app,
            self.webhooks,
            self.notifications,
        ):
            if thread is not None:
                thread.start()

    # ---- views ------------------------------------------------------------------------------------

    def redis_depths(self) -> list[dict[str, Any]]:
        from dashboard.queries import queue_depths

        return queue_depths(self.args.redis_url, self.namespace, self.queues)

    def rss_line(self) -> str:
        alive = self.sampler.current(max_age_s=self.args.sample_s * 2)
        parts = []
        for slot in [self.web, self.scheduler, *self.workers]:
            main = [i for i in alive if i.role == slot.name]
            children = [i for i in alive if i.role == f"{slot.name}/child"]
            if not main:
                parts.append(f"{slot.name} -")
                continue
            text = f"{slot.name} {main[-1].latest_kib() / 1024:.0f}"
            if children:
                text += " + " + " ".join(f"{c.latest_kib() / 1024:.0f}" for c in children)
            parts.append(text)
        return " | ".join(parts)

    def check_alive(self) -> None:
        for slot in (self.web, self.scheduler):
            slot.process.check_alive()

    # ---- phases -----------------------------------------------------------------------------------

    def run_load(self, progress: Progress) -> float:
        """Until --minutes have passed; returns the monotonic time the load ended."""
        end = self.started_at + self.args.minutes * 60
        next_report = self.started_at + self.args.interval_s
        while time.monotonic() < end:
            time.sleep(max(0.0, min(next_report, end) - time.monotonic()))
            self.check_alive()
            if time.monotonic() >= next_report:
                progress.report("load")
                next_report += self.args.interval_s
        load_end = time.monotonic()
        self.stop_load.set()
        for thread in (self.app, self.webhooks, self.notifications, self.killer):
            if thread is not None:
                thread.join(120)
        return load_end

    def drained(self, conn: psycopg.Connection) -> bool:
        open_jobs = conn.execute(
            "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND finished_at IS NULL",
            (list(self.app.load.jobs),),
        ).fetchone()[0]
        open_events = conn.execute(
            "SELECT count(*) FROM payment_events WHERE status IN ('received', 'processing')"
        ).fetchone()[0]
        open_notifications = conn.execute(
            "SELECT count(*) FROM notification_queue WHERE status IN ('pending', 'failed', 'processing')"
        ).fetchone()[0]
        return open_jobs == 0 and open_events == 0 and open_notifications == 0

    def drain(self, conn: psycopg.Connection, progress: Progress) -> float:
        """Workers, web and scheduler keep running until the app's jobs, the inbox and the
        notifications are done; returns the seconds it took."""
        started = time.monotonic()
        next_report = started + self.args.interval_s
        while not self.drained(conn):
            if time.monotonic() - started > self.args.drain_timeout_s:
                print(f"drain: not done after {self.args.drain_timeout_s:.0f} s; checking anyway", flush=True)
                break
            self.check_alive()
            time.sleep(1)
            if time.monotonic() >= next_report:
                progress.report("drain")
                next_report += self.args.interval_s
        return time.monotonic() - started

    def stop(self, conn: psycopg.Connection | None) -> None:
        """The scheduler first (no new ticks), then, once its last ticks ran, workers and web."""
        self.stop_load.set()
        if hasattr(self, "scheduler"):
            self.scheduler.process.stop()
        if conn is not None:
            deadline = time.monotonic() + FINAL_JOBS_TIMEOUT_S
            while (
                time.monotonic() < deadline
                and conn.execute("SELECT count(*) FROM jobs WHERE finished_at IS NULL").fetchone()[0]
            ):
                time.sleep(0.5)
        self.stop_procs.set()
        if hasattr(self, "supervisor") and self.supervisor.is_alive():
            self.supervisor.join(5)  # so that it does not start a worker we are stopping
        for slot in [*getattr(self, "workers", []), *([self.web] if hasattr(self, "web") else [])]:
            slot.process.stop()
        if self.provider is not None:
            self.provider.__exit__(None, None, None)

    # ---- the whole run ----------------------------------------------------------------------------

    def run(self) -> bool:
        conn = None
        try:
            self.start()
            conn = psycopg.connect(self.database_url, autocommit=True)
            progress = Progress(conn, self)
            print(
                f"load started: {self.args.workers} x skyport worker -p {self.args.processes} -t "
                f"{self.args.threads}, scheduler, web on :{self.port}; logs in {self.log_dir}",
                flush=True,
            )
            load_end = self.run_load(progress)
            print(f"load stopped after {load_end - self.started_at:.0f} s; draining ...", flush=True)
            drain_s = self.drain(conn, progress)
            print(f"drained in {drain_s:.0f} s", flush=True)
        finally:
            self.stop(conn)
        try:
            return final_report(self, conn, load_end)
        finally:
            conn.close()
