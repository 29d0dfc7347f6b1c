"""Partition and materialized-view maintenance, measured.

    .venv/bin/python -m bench.families.maintenance [--shipments 2000000] [--checks 200] [--refreshes 2]

1. ensure_partitions when every partition exists (the hourly case: a catalog check, no DDL), per
   registered table, against the peer "ensure with DDL" (the same call when 4 months are missing).
2. shipment_statistics over N shipments: REFRESH ... CONCURRENTLY vs plain REFRESH (the peer),
   each after 1% of the shipments changed status, with a reader issuing
   `SELECT ... FROM shipment_statistics WHERE date = $1` every 5 ms (open loop: a read's latency
   counts from when it was due) on another connection during each refresh: refresh time, and the
   reader's p50 / p99 / max latency over the reads due during the refresh (and an idle baseline).

The bench creates its own database (dropped at the end); it uses no Redis.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("SKYPORT_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The reader issues one read every this many seconds (200 reads/s).
READ_PERIOD_S = 0.005
READER_QUERY = "SELECT shipment_status, count, avg_cost FROM shipment_statistics WHERE date = %s"
SEED_SHIPMENTS = """
WITH u AS (INSERT INTO users (email, password_hash, user_type)
           VALUES ('bench@example.test', 'x', 'business')
           RETURNING user_id),
     c AS (INSERT INTO countries (country_code, country_name) VALUES ('BQA', 'A'), ('BQB', 'B')
           RETURNING country_id),
     s AS (INSERT INTO freight_services (service_name, service_type) VALUES ('Sea', 'sea')
           RETURNING service_id)
INSERT INTO shipments (tracking_number, user_id, service_id, origin_country_id, destination_country_id,
                       shipment_status, total_cost, created_at)
SELECT 'B-' || g, u.user_id, s.service_id, (SELECT min(country_id) FROM c), (SELECT max(country_id) FROM c),
       (ARRAY['pending', 'confirmed', 'picked_up', 'in_transit', 'customs_clearance', 'out_for_delivery',
              'delivered', 'cancelled', 'returned', 'exception'])[1 + (g / 1095) %% 10],
       (g %% 997)::numeric,
       timestamp '2024-01-01' + (g %% 1095) * interval '1 day' + (g %% 1440) * interval '1 minute'
  FROM generate_series(1, %(n)s) g, u, s
"""
# 1% of the shipments change status between two refreshes, so the concurrent refresh has a diff to apply.
CHANGE_STATUSES = """
UPDATE shipments
   SET shipment_status = CASE shipment_status WHEN 'delivered' THEN 'returned' ELSE 'delivered' END
 WHERE tracking_number IN (SELECT 'B-' || (random() * %(n)s)::int FROM generate_series(1, %(k)s))
"""


def db_url(name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{name}"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def bench_partitions(conn: psycopg.Connection, checks: int) -> None:
    from jobs.partitions import maintain
    from jobs.partitions.registry import DEFAULT_TABLES

    print("\n== ensure_partitions, per table ==")
    print(f"{'table':<28} {'all exist: mean':>15} {'p99':>8}   {'peer: 4 months missing (DDL)':>28}")
    for i, table in enumerate(DEFAULT_TABLES):
        maintain.ensure_partitions(conn, [table])  # everything exists from here on
        times = []
        for _ in range(checks):
            started = time.perf_counter()
            [result] = maintain.ensure_partitions(conn, [table])
            times.append((time.perf_counter() - started) * 1000)
            assert result.created == [] and result.outcome == "ok"
        started = time.perf_counter()
        [result] = maintain.ensure_partitions(conn, [table], today=date(2090 + i, 1, 1))
        ddl_ms = (time.perf_counter() - started) * 1000
        assert len(result.created) == 4
        mean = statistics.mean(times)
        print(
            f"{table.parent:<28} {mean:>12.2f} ms {pct(times, 0.99):>5.2f} ms   {ddl_ms:>25.1f} ms"
            f"  (DDL / check = {ddl_ms / mean:.0f}x)"
        )


def reader_loop(
    url: str, days: list[date], stop: threading.Event, out: list[tuple[float, float]], period_s: float
) -> None:
    """Open loop: a read is due every `period_s`; its latency counts from when it was due, so a
    reader stuck behind a lock accounts for every read it could not issue meanwhile (no
    coordinated omission). Records (due time, latency ms)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '300s'")
        due = time.perf_counter()
        while not stop.is_set():
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            conn.execute(READER_QUERY, (random.choice(days),), prepare=True).fetchall()
            finished = time.perf_counter()
            while due <= finished:  # every read due up to now completes when this one did
                out.append((due, (finished - due) * 1000))
                due += period_s


def read_during(
    url: str, days: list[date], action: Callable[[], object], period_s: float = READ_PERIOD_S
) -> tuple[float, list[float]]:
    """Run `action` while a reader reads; returns its duration and the latencies of the reads
    due while it ran."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    reader = threading.Thread(target=reader_loop, args=(url, days, stop, samples, period_s))
    reader.start()
    time.sleep(0.2)  # the reader is running when the action starts
    started = time.perf_counter()
    action()
    ended = time.perf_counter()
    stop.set()
    reader.join()
    return ended - started, [ms for due, ms in samples if started <= due <= ended]


def bench_matview(conn: psycopg.Connection, url: str, shipments: int, refreshes: int) -> None:
    from jobs.matviews import refresh

    print(f"\n== shipment_statistics over {shipments:,} shipments ==")
    started = time.perf_counter()
    conn.execute(SEED_SHIPMENTS, {"n": shipments})
    conn.execute("VACUUM ANALYZE shipments")
    print(f"seeded in {time.perf_counter() - started:.1f}s")
    refresh.refresh_view(conn, "shipment_statistics", force_mode="plain")  # populated, current
    conn.execute("VACUUM ANALYZE shipment_statistics")
    days = [d for (d,) in conn.execute("SELECT DISTINCT date::date FROM shipment_statistics").fetchall()]
    view_rows = conn.execute("SELECT count(*) FROM shipment_statistics").fetchone()[0]
    print(f"view: {view_rows:,} rows over {len(days)} days")

    _, idle = read_during(url, days, lambda: time.sleep(3))
    print(
        f"{'reader, idle (3 s)':<34} p50 {pct(idle, 0.5):6.2f} ms  p99 {pct(idle, 0.99):6.2f} ms  "
        f"max {max(idle):7.1f} ms  ({len(idle)} reads)"
    )
    results: dict[str, list[tuple[float, list[float]]]] = {"concurrent": [], "plain": []}
    for round_ in range(refreshes):
        for mode in ("concurrent", "plain"):
            conn.execute(CHANGE_STATUSES, {"n": shipments, "k": shipments // 100})
            elapsed, lat = read_during(
                url, days, lambda m=mode: refresh.refresh_view(conn, "shipment_statistics", force_mode=m)
            )
            results[mode].append((elapsed, lat))
            print(
                f"{mode + ' refresh, round ' + str(round_ + 1):<34} {elapsed:6.2f} s; reader p50 "
                f"{pct(lat, 0.5):6.2f} ms  p99 {pct(lat, 0.99):8.2f} ms  max {max(lat):8.1f} ms  "
                f"({len(lat)} reads)"
            )
    conc = statistics.median(e for e, _ in results["concurrent"])
    plain = statistics.median(e for e, _ in results["plain"])
    p99_conc = max(pct(lat, 0.99) for _, lat in results["concurrent"])
    p99_plain = max(pct(lat, 0.99) for _, lat in results["plain"])
    print(
        f"\nrefresh time (median): concurrent {conc:.2f} s, plain {plain:.2f} s "
        f"(concurrent / plain = {conc / plain:.2f}x)"
    )
    print(
        f"reader p99 during refresh (worst round): concurrent {p99_conc:.2f} ms, plain {p99_plain:.1f} ms "
        f"(plain / concurrent = {p99_plain / p99_conc:.1f}x); target concurrent < 20 ms: "
        f"{'met' if p99_conc < 20 else 'NOT met'}"
    )


def machine() -> None:
    def first(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=5).stdout.strip()
        except OSError:
            return "?"

    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next((line.split()[1] for line in meminfo if line.startswith("MemTotal")), "0")
    gib = int(mem) / 1024 / 1024
    print(f"machine: {os.cpu_count()} cpus ({cpu}), {gib:.1f} GiB, Python {platform.python_version()}")
    print(f"load: {first(['uptime'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shipments", type=int, default=2_000_000)
    parser.add_argument("--checks", type=int, default=200, help="ensure calls timed per table")
    parser.add_argument("--refreshes", type=int, default=2, help="rounds of (concurrent, plain)")
    args = parser.parse_args()

    import config
    from db import migrate

    name = f"skyport_bench_maint_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        version = admin.execute("SHOW server_version").fetchone()[0]
    url = db_url(name)
    os.environ["DATABASE_URL"] = url
    config.get.cache_clear()
    try:
        machine()
        print(f"PostgreSQL {version}")
        migrate.upgrade("heads", url)
        with psycopg.connect(url, autocommit=True) as conn:
            bench_partitions(conn, args.checks)
            bench_matview(conn, url, args.shipments, args.refreshes)
        print(f"load after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
