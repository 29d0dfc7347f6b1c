"""What the soak prints: a progress line per interval while it runs, and after the drain the
kills and their recoveries, the stalled first attempts, the RSS of every process incarnation and
the consistency checks."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import psycopg

from bench.soak import checks
from bench.soak.procs import rss_growth

if TYPE_CHECKING:
    from bench.soak.runner import Soak

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


def final_report(soak: Soak, conn: psycopg.Connection, load_end: float) -> bool:
    """The kills, the stalls, the RSS of every incarnation, the consistency checks; all passed?"""
    kills = soak.killer.kills if soak.killer else []
    print_kills(soak, conn, kills)
    print_stalls(soak, conn, kills)
    results = [
        checks.ledger_final(conn),
        checks.app_jobs(conn, soak.app.load),
        checks.load_errors(soak.app.load),
        checks.dead_jobs(conn, soak.app.load),
        checks.dedup_keys(conn, soak.app.load),
        *checks.effects(conn, kills),
        checks.notifications(
            conn,
            soak.notifications.load,
            soak.provider.received.times if soak.provider else [],
            kills,
        ),
        checks.payments(conn, soak.webhooks.load),
        rss_check(soak, load_end),
    ]
    print("\nConsistency")
    for check in results:
        print(f"  [{'PASS' if check.ok else 'FAIL'}] {check.name}\n         {check.detail}")
    ok = all(c.ok for c in results)
    print(f"\nsoak: {'all checks passed' if ok else 'CHECKS FAILED'}")
    return ok


def print_kills(soak: Soak, conn: psycopg.Connection, kills: list[Any]) -> None:
    """Each kill, its slot's restart, and what became of the jobs it cut short."""
    print(f"\nKills ({len(kills)}), restarts ({len(soak.supervisor.restarts)}):")
    for kill in kills:
        restart = next((r for r in soak.supervisor.restarts if r.slot == kill.slot and r.at >= kill.at), None)
        after = f"restarted {restart.at - kill.at:.1f} s later (exit {restart.exit_code})" if restart else "-"
        print(
            f"  {kill.at - soak.started_at:6.0f} s  {kill.slot} pid {kill.pid}: {after}; "
            f"{recovery(conn, kill)}"
        )


def print_stalls(soak: Soak, conn: psycopg.Connection, kills: list[Any]) -> None:
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
        print(f"  job {job_id}: due at {due - soak.started_wall:6.0f} s, waited {wait_s:.1f} s")


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


def rss_check(soak: Soak, load_end: float) -> checks.Check:
    warmup_s, window_s, limit = soak.args.warmup_min * 60, soak.args.interval_s, soak.args.rss_limit
    print(
        f"\nRSS per process incarnation: mean of the first {window_s:.0f} s window after a "
        f"{warmup_s:.0f} s warm-up vs the last {window_s:.0f} s window before the load ended or the "
        f"process died (samples every {soak.args.sample_s:g} s)"
    )
    judged, over = [], []
    for inc in soak.sampler.all():
        growth = rss_growth(inc, warmup_s, window_s, load_end)
        life = f"{inc.first_seen - soak.started_at:6.0f} .. {inc.last_seen - soak.started_at:6.0f} s"
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
    return checks.Check(
        f"RSS growth after warm-up within {limit:.0%}", bool(workers_judged) and not over, detail
    )
