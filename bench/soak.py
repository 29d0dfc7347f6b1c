"""Soak: N minutes of mixed load on real processes, random kill -9 of workers, then a consistency check.

    .venv/bin/python -m bench.soak [--minutes 30] [--kill-every-min 4] [--warmup-min 3] [--interval-s 30]

In a fresh database and Redis namespace of its own (both removed at the end), it runs `skyport web`,
`skyport scheduler` and `--workers` supervised `skyport worker -p P -t T` commands, and loads them with:

  app          `enqueue` / `enqueue_many` of no-op-ish jobs (bench/soak_actors.py) at --jobs-per-s:
               some delayed, some with dedup keys enqueued 2-3 times, some failing 1-2 attempts,
               some in app transactions that roll back, and a poison job every --poison-every-s;
  webhooks     the payments simulator's signed callbacks (duplicates, out of order, failed and
               refunded payments) posted to the web process at --webhooks-per-s;
  notifications `enqueue_notification` at --notifications-per-s, in-app, and a share also over an
               HTTP channel (a local provider from tests/notify/servers.py that fails a few sends);
  kills        every --kill-every-min (+-25 %), kill -9 of one Dramatiq worker process of a random
               slot; its `skyport worker` then exits and the supervisor starts it again at once.

Every --interval-s it prints throughput, queue depths, job latency and each process's RSS. After
the load it stops the kills and the load, waits for the queues to drain (--drain-timeout-s), stops
everything and checks: every job final, no job lost, no dead job but the poison ones, no dedup key
run twice, each job's effect once (a repeat only where a kill cut its attempt short), every
notification sent once per key, every shipment's amount_paid equal to the simulator's ledger and no
drift (jobs/payments' reconciliation query), and RSS growth.

RSS growth is judged per process incarnation (a pid from its first sample to its last; a restarted
worker is a new incarnation with its own warm-up): the mean VmRSS over the first --interval-s
window after --warmup-min from its first sample, against the mean over the last --interval-s window
before the load ended (or before it was killed). Incarnations that did not live through the warm-up
and two whole windows are listed but not judged. Every judged one must stay within --rss-limit.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from bench import soak_checks
from bench.payments import _free_port, _wait_http
from bench.soak_load import WEBHOOK_SECRET, AppLoadThread, NotificationThread, WebhookThread
from bench.soak_procs import Killer, RssSampler, Slot, Supervisor, rss_growth
from bench.throughput import _load, bench_database, finish_run, machine_facts, redis_namespaces
from tests.support import scalar, wait_for

# After the drain, how long the jobs enqueued meanwhile (scheduler ticks) may take to finish.
FINAL_JOBS_TIMEOUT_S = 120.0

# -- soak_progress -- the ledger's totals and queue depths, the inbox and the notifications.
PROGRESS = """
SELECT j.finished, j.scheduled, j.queued, j.retrying, j.running, e.received, e.processed, n.sent, now()
  FROM (SELECT count(finished_at) AS finished,
               count(*) FILTER (WHERE state = 'scheduled') AS scheduled,
               count(*) FILTER (WHERE state = 'queued') AS queued,
               count(*) FILTER (WHERE state = 'retrying') AS retrying,
               count(*) FILTER (WHERE state = 'running') AS running
          FROM jobs) j,
       (SELECT count(*) AS received, count(processed_at) AS processed FROM payment_events) e,
       (SELECT count(*) FILTER (WHERE status = 'sent') AS sent FROM notification_queue) n
"""

# -- soak_queue_waits -- soak_work jobs that ran once: due (eta) to started, and when they were due.
QUEUE_WAITS = """
SELECT id, extract(epoch FROM started_at - eta)::float8, extract(epoch FROM eta)::float8 FROM jobs
 WHERE actor = 'soak_work' AND state = 'succeeded' AND attempts = 1
"""
# A first attempt that waited longer than this many times the p99 (and STALL_MIN_S) is listed.
STALL_FACTOR = 3.0
STALL_MIN_S = 10.0

# -- soak_latency -- due (eta) to finished, of the soak_work jobs finished in an interval.
LATENCY = """
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY s), max(s)
  FROM (SELECT extract(epoch FROM finished_at - eta) AS s FROM jobs
         WHERE actor = 'soak_work' AND state = 'succeeded'
           AND finished_at > %(since)s AND finished_at <= %(until)s) x
"""


class _TimedReceipts(list):
    """HttpProvider.received with the time of each delivery: (monotonic s, Idempotency-Key)."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[tuple[float, str]] = []

    def append(self, key: str) -> None:
        super().append(key)
        self.times.append((time.monotonic(), key))


class Progress:
    """One report line per interval: rates since the previous line, depths now."""

    def __init__(self, conn: psycopg.Connection, soak: Soak) -> None:
        self.conn = conn
        self.soak = soak
        self.prev = conn.execute(PROGRESS).fetchone()
        self.prev_at = time.monotonic()
        self.prev_enqueued = 0

    def report(self, phase: str) -> None:
        row = self.conn.execute(PROGRESS).fetchone()
        now = time.monotonic()
        span = max(now - self.prev_at, 1e-6)
        enqueued = len(self.soak.app.load.jobs)
        p50_p99, worst = self.conn.execute(LATENCY, {"since": self.prev[8], "until": row[8]}).fetchone()
        latency = f"{p50_p99[0]:.1f}/{p50_p99[1]:.1f}/{worst:.1f}" if worst is not None else "-"
        redis = sum(q["depth"] for q in self.soak.redis_depths())
        print(
            f"[{now - self.soak.started_at:6.0f} s {phase:<5}] jobs {(row[0] - self.prev[0]) / span:6.1f}/s "
            f"(app enq {(enqueued - self.prev_enqueued) / span:5.1f}/s) | webhooks in "
            f"{(row[5] - self.prev[5]) / span:5.1f}/s done {(row[6] - self.prev[6]) / span:5.1f}/s | "
            f"notif {(row[7] - self.prev[7]) / span:5.1f}/s | ledger sched {row[1]} queued {row[2]} "
            f"retrying {row[3]} running {row[4]}, redis {redis} | latency p50/p99/max {latency} s | "
            f"kills {len(self.soak.killer.kills) if self.soak.killer else 0}",
            flush=True,
        )
        print(f"{'':16}RSS MiB: {self.soak.rss_line()}", flush=True)
        self.prev, self.prev_at, self.prev_enqueued = row, now, enqueued


class Soak:
    def __init__(self, args: argparse.Namespace, database_url: str, namespace: str, log_dir: Path) -> None:
        self.args = args
        self.database_url = database_url
        self.namespace = namespace
        self.log_dir = log_dir
        self.stop_load = threading.Event()
        self.stop_procs = threading.Event()
        self.port = _free_port()
        self.provider: Any = None
        self.killer: Killer | None = None
        self.started_at, self.started_wall = time.monotonic(), time.time()

    # ---- set-up -----------------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.args.redis_url,
            "SKYPORT_BROKER_NAMESPACE": self.namespace,
            "SKYPORT_EXTRA_MODULES": "bench.soak_actors",
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
        from bench.soak_actors import EFFECTS_DDL  # declares actors on the broker: after the settings

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            conn.execute(EFFECTS_DDL)
        cli = [sys.executable, "-m", "workers.cli"]
        self.web = Slot("web", [*cli, "web", "--port", str(self.port)], env, self.log_dir)
        self.scheduler = Slot("scheduler", [*cli, "scheduler"], env, self.log_dir)
        worker_argv = [*cli, "worker", "-p", str(self.args.processes), "-t", str(self.args.threads)]
        self.workers = [
            Slot(f"worker{i + 1}", worker_argv, env, self.log_dir) for i in range(self.args.workers)
        ]
        self.web.process.start()
        _wait_http(f"http://127.0.0.1:{self.port}/healthz", 60)
        for slot in [self.scheduler, *self.workers]:
            slot.process.start()
        expected = self.args.workers * self.args.processes
        wait_for(
            lambda: scalar(self.database_url, "SELECT count(*) FROM workers") >= expected,
            90,
            0.2,
            f"{expected} worker processes to heartbeat",
        )
        from workers.app import broker

        self.queues = sorted(broker.get_declared_queues())
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
            return self.report(conn, load_end)
        finally:
            conn.close()

    def report(self, conn: psycopg.Connection, load_end: float) -> bool:
        kills = self.killer.kills if self.killer else []
        print(f"\nKills ({len(kills)}), restarts ({len(self.supervisor.restarts)}):")
        for kill in kills:
            restart = next(
                (r for r in self.supervisor.restarts if r.slot == kill.slot and r.at >= kill.at), None
            )
            after = (
                f"restarted {restart.at - kill.at:.1f} s later (exit {restart.exit_code})" if restart else "-"
            )
            print(
                f"  {kill.at - self.started_at:6.0f} s  {kill.slot} pid {kill.pid}: {after}; "
                f"{self.recovery(conn, kill)}"
            )
        self.print_stalls(conn, kills)
        checks = [
            soak_checks.ledger_final(conn),
            soak_checks.app_jobs(conn, self.app.load),
            soak_checks.load_errors(self.app.load),
            soak_checks.dead_jobs(conn, self.app.load),
            soak_checks.dedup_keys(conn, self.app.load),
            *soak_checks.effects(conn, kills),
            soak_checks.notifications(
                conn,
                self.notifications.load,
                self.provider.received.times if self.provider else [],
                kills,
            ),
            soak_checks.payments(conn, self.webhooks.load),
            self.rss_check(load_end),
        ]
        print("\nConsistency")
        for check in checks:
            print(f"  [{'PASS' if check.ok else 'FAIL'}] {check.name}\n         {check.detail}")
        ok = all(c.ok for c in checks)
        print(f"\nsoak: {'all checks passed' if ok else 'CHECKS FAILED'}")
        return ok

    def print_stalls(self, conn: psycopg.Connection, kills: list[Any]) -> None:
        """First attempts that waited far longer than the others to start (not a check: at least
        once delivery allows it; it shows what a kill costs the messages a process had taken)."""
        rows = conn.execute(QUEUE_WAITS).fetchall()
        if not rows:
            return
        waits = sorted(r[1] for r in rows)
        p50, p99 = waits[len(waits) // 2], waits[min(len(waits) - 1, int(len(waits) * 0.99))]
        threshold = max(STALL_MIN_S, STALL_FACTOR * p99)
        stalled = [r for r in rows if r[1] > threshold]
        around_kill = [r for r in stalled if any(r[2] <= k.wall <= r[2] + r[1] for k in kills)]
        print(
            f"\nQueue wait of first attempts (due -> started), {len(waits):,} soak_work jobs: "
            f"p50 {p50:.1f} s, p99 {p99:.1f} s, max {waits[-1]:.1f} s; {len(stalled)} waited over "
            f"{threshold:.0f} s (max({STALL_MIN_S:.0f}, {STALL_FACTOR:g} x p99)), {len(around_kill)} of "
            "them due before a kill and started after it"
        )
        for job_id, wait_s, due in sorted(stalled, key=lambda r: -r[1])[:10]:
            print(f"  job {job_id}: due at {due - self.started_wall:6.0f} s, waited {wait_s:.1f} s")

    @staticmethod
    def recovery(conn: psycopg.Connection, kill: Any) -> str:
        """What became of the jobs the killed process was running, and when."""
        if not kill.running_jobs:
            return "no job running"
        states, last = conn.execute(
            """SELECT array_agg(DISTINCT state), extract(epoch FROM max(finished_at))
                 FROM jobs WHERE id = ANY(%s)""",
            (kill.running_jobs,),
        ).fetchone()
        after = f"{float(last) - kill.wall:.1f} s after the kill" if last is not None else "never"
        return f"{len(kill.running_jobs)} jobs running, now {'/'.join(states)}, the last final {after}"

    def rss_check(self, load_end: float) -> soak_checks.Check:
        warmup_s, window_s, limit = self.args.warmup_min * 60, self.args.interval_s, self.args.rss_limit
        print(
            f"\nRSS per process incarnation: mean of the first {window_s:.0f} s window after a "
            f"{warmup_s:.0f} s warm-up vs the last {window_s:.0f} s window before the load ended or the "
            f"process died (samples every {self.args.sample_s:g} s)"
        )
        judged, over = [], []
        for inc in self.sampler.all():
            growth = rss_growth(inc, warmup_s, window_s, load_end)
            life = f"{inc.first_seen - self.started_at:6.0f} .. {inc.last_seen - self.started_at:6.0f} s"
            if not growth.judged or growth.ratio is None:
                print(f"  {inc.role:<16} pid {inc.pid:<8} {life}  too short to judge")
                continue
            judged.append(growth)
            verdict = "ok" if growth.ratio <= limit else "GROWTH"
            if growth.ratio > limit:
                over.append(f"{inc.role} pid {inc.pid} {growth.ratio:+.1%}")
            print(
                f"  {inc.role:<16} pid {inc.pid:<8} {life}  {growth.first_kib / 1024:7.1f} -> "
                f"{growth.last_kib / 1024:7.1f} MiB  {growth.ratio:+6.1%}  {verdict}"
            )
        workers_judged = [g for g in judged if g.incarnation.role.endswith("/child")]
        detail = (
            f"{len(judged)} incarnations judged ({len(workers_judged)} Dramatiq worker processes), "
            f"limit {limit:.0%}; over it: {', '.join(over) or 'none'}"
        )
        if not workers_judged:
            detail += "; no worker process lived long enough to judge (longer --minutes or --kill-every-min)"
        return soak_checks.Check(
            f"RSS growth after warm-up within {limit:.0%}", bool(workers_judged) and not over, detail
        )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--minutes", type=float, default=30.0, help="minutes of load (default: %(default)s)")
    add("--kill-every-min", type=float, default=4.0, help="minutes between kills, +-25%% (0: none)")
    add("--warmup-min", type=float, default=3.0, help="a process's warm-up before RSS counts")
    add("--interval-s", type=float, default=30.0, help="report interval, and the RSS window")
    add("--sample-s", type=float, default=5.0, help="RSS sampling period")
    add("--workers", type=int, default=2, help="supervised `skyport worker` commands")
    add("--processes", type=int, default=1, help="Dramatiq processes per `skyport worker`")
    add("--threads", type=int, default=8, help="threads per worker process")
    add("--jobs-per-s", type=float, default=40.0, help="app jobs enqueued per second")
    add("--webhooks-per-s", type=float, default=10.0, help="payment callbacks posted per second")
    add("--notifications-per-s", type=float, default=5.0, help="enqueue_notification calls per second")
    add("--poison-every-s", type=float, default=60.0, help="one poison job this often")
    add("--no-http", action="store_true", help="in-app notifications only (no HTTP channel)")
    add("--http-share", type=float, default=0.3, help="share of notifications also sent over HTTP")
    add("--http-fail-share", type=float, default=0.02, help="share of HTTP sends answered 503")
    add("--drain-timeout-s", type=float, default=600.0, help="longest wait for the queues to drain")
    add("--rss-limit", type=float, default=0.10, help="largest RSS growth after warm-up (0.10 = 10%%)")
    add("--seed", type=int, default=1)
    add(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server to use (the soak creates and drops a database of its own there)",
    )
    add("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    add("--keep-logs", action="store_true", help="keep the processes' logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tag = secrets.token_hex(4)
    namespace = f"skyport_soak_{tag}"
    log_dir = Path(tempfile.mkdtemp(prefix="skyport-soak-"))
    load_before = _load()
    print(f"skyport soak {tag}: {' '.join(sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before: {load_before}")
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, namespace),
            bench_database(args.database_url, f"skyport_soak_{tag}") as database_url,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            ok = Soak(args, database_url, namespace, log_dir).run()
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
