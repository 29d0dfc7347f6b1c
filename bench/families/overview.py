"""The console's overview over a million-row ledger: server time of `GET /` (counts, charts, the
per-queue and per-actor tables) for each range, read from the rollup (workers/stats.py), against
the peer: the same figures read from the ledger itself (a count per state, attempts per bucket).

    .venv/bin/python -m bench.families.overview [--rows 1000000] [--repeat 20]

Creates its own database (migrated to head), fills `jobs` with `--rows` rows over a busy week (the
jobs-list bench's fill) and `job_attempts` with one attempt per started job, runs ANALYZE, then the
rollup's first pass (the week's backfill) and a steady pass (the last minutes), each timed. Then
times the whole `GET /` through the ASGI app (login, session, reads, charts, template) for 1 h,
24 h and 7 d, `--repeat` times each: median and p95 of the wall time, and the mean CPU time of
this process per request (the web side, whatever the machine's load); then the rollup's reads
alone and the peer's two ledger queries (median and p95). The budget
is 100 ms server time. The database is dropped at the end; the bench writes no Redis key.
"""

from __future__ import annotations

import argparse
import os
import secrets
import time

import psycopg

from bench.families.dashboard import ADMIN_URL, FILL, TARGET_MS, timed
from bench.support.databases import bench_database
from bench.support.facts import finish_run, machine_facts, start_run

# One attempt per job that started: its outcome from the job's state.
FILL_ATTEMPTS = """
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, 1, worker_id, started_at - interval '0.3 second' * (id % 7),
       coalesce(finished_at, started_at + interval '1 second'),
       CASE WHEN state = 'succeeded' THEN 'succeeded' ELSE 'failed' END, last_error
  FROM jobs WHERE started_at IS NOT NULL AND state <> 'running'
"""

# The peer: the overview's figures read from the ledger (what the console did before the rollup).
PEER_COUNTS = "SELECT state, count(*) FROM jobs GROUP BY state"
PEER_ATTEMPTS = """
SELECT date_bin(%(bucket)s::interval, finished_at, timestamptz '2000-01-01') AS at,
       count(*) FILTER (WHERE outcome = 'succeeded'), count(*) FILTER (WHERE outcome <> 'succeeded'),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY finished_at - started_at)
  FROM job_attempts WHERE finished_at >= now() - %(span)s::interval GROUP BY 1
"""
PEER_RANGES = {"1h": ("1 minute", "1 hour"), "24h": ("15 minutes", "24 hours"), "7d": ("1 hour", "7 days")}


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.families.overview")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    tag, log_dir, load_before = start_run("overview")
    os.environ["SKYPORT_BROKER_NAMESPACE"] = f"skyport-bench-overview-{tag}"  # reads only: an empty namespace
    try:
        with bench_database(ADMIN_URL, f"skyport_bench_overview_{tag}") as url:
            return run(url, args.rows, args.repeat)
    finally:
        from db import pool

        pool.close()
        finish_run(log_dir, keep=False, load_before=load_before)


def run(url: str, rows: int, repeat: int) -> int:
    os.environ["DATABASE_URL"] = url
    os.environ["SKYPORT_SECRET_KEY"] = "bench"
    from dashboard import auth

    password = secrets.token_urlsafe(12)
    os.environ["SKYPORT_DASHBOARD_USERS"] = f"bench:{auth.hash_password(password)}:readonly"
    import config

    config.get.cache_clear()
    print("machine:", machine_facts(url, config.get().broker.url))
    fill(url, rows)

    from starlette.testclient import TestClient

    from dashboard.app import create_app
    from db.states import JobState
    from workers import stats

    failures = 0
    with psycopg.connect(url, autocommit=True) as conn, TestClient(create_app()) as client:
        for label in ("first pass (the week's backfill)", "steady pass (every minute)"):
            start = time.perf_counter()
            written = stats.roll_up(conn)
            print(f"rollup {label}: {time.perf_counter() - start:.2f} s, buckets written {written}")
        assert client.post("/api/login", json={"username": "bench", "password": password}).status_code == 200
        heads = (
            "range",
            "GET / ms",
            "web CPU ms",
            "rollup reads ms",
            "peer: ledger reads ms",
            "peer / rollup",
        )
        print(f"{heads[0]:<6} {heads[1]:>18} {heads[2]:>10} {heads[3]:>18} {heads[4]:>22} {heads[5]:>14}")
        for range_key, (bucket, span) in PEER_RANGES.items():

            def get(range_key: str = range_key) -> None:
                response = client.get("/", params={"range": range_key})
                assert response.status_code == 200, response.text[-300:]

            def reads(range_key: str = range_key) -> None:
                stats.state_counts(conn, JobState)
                stats.read_range(conn, range_key)

            def peer(bucket: str = bucket, span: str = span) -> None:
                conn.execute(PEER_COUNTS).fetchall()
                conn.execute(PEER_ATTEMPTS, {"bucket": bucket, "span": span}).fetchall()

            cpu_before = time.process_time()
            h_med, h_p95 = timed(get, repeat)
            cpu_ms = (time.process_time() - cpu_before) * 1000 / (repeat + 1)
            r_med, r_p95 = timed(reads, repeat)
            p_med, p_p95 = timed(peer, max(repeat // 4, 3))
            flag = "" if h_med < TARGET_MS else "  OVER BUDGET"
            failures += bool(flag)
            print(
                f"{range_key:<6} {h_med:>8.1f} / {h_p95:<7.1f} {cpu_ms:>10.1f} {r_med:>8.1f} / {r_p95:<7.1f} "
                f"{p_med:>11.1f} / {p_p95:<8.1f} {p_med / max(r_med, 0.001):>12.1f}x{flag}"
            )
    print("within budget" if not failures else f"{failures} range(s) over {TARGET_MS:.0f} ms")
    return 0 if not failures else 1


def fill(url: str, rows: int) -> None:
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL, {"rows": rows})
        conn.execute(FILL_ATTEMPTS)
        conn.execute("VACUUM ANALYZE jobs")
        conn.execute("VACUUM ANALYZE job_attempts")
        jobs = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        attempts = conn.execute("SELECT count(*) FROM job_attempts").fetchone()[0]
    print(f"filled {jobs} jobs and {attempts} attempts in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    raise SystemExit(main())
