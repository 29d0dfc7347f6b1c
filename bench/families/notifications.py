"""Notification dispatch throughput: N due in-app notifications (no network) drained by 1, 2 and 4
concurrent dispatcher processes, against the ceiling of the design measured on the same table.

    .venv/bin/python -m bench.families.notifications [--rows 100000] [--batch 100] [--processes 1 2 4]

For each process count, on a freshly filled table (VACUUM ANALYZE after the fill):
  raw       each process loops: the claim CTE (FOR UPDATE SKIP LOCKED, same WHERE/ORDER/index as the
            dispatcher's) marking `processing`, then one UPDATE to `sent` of the claimed ids;
  dispatch  each process calls `jobs.notifications.dispatch_due` (the plain function, no broker)
            until it claims nothing: claim, deliver over the in-app channel, mark sent.
  actor     (--actor) the same through the broker: a `skyport worker` (2 processes x 2 threads)
            runs 4 `dispatch_notifications` jobs enqueued at once through the ledger; timed from the
            enqueue to the last row sent (includes the relay and Redis hops, not the worker start).
Figures: rows/s from the start signal to the last process done; duplicates = rows marked sent more
than once (sum of the processes' counts minus distinct rows, plus rows claimed more than once).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import subprocess
import time
import uuid

import psycopg

from bench.families.common import bench_database, machine, uptime
from bench.support.procs import REPO, SKYPORT

TARGET_ROWS_PER_S = 12_000
TARGET_RATIO = 0.5

# -- bench_raw_claim -- the peer: the dispatcher's claim without the dispatcher.
RAW_CLAIM = """
WITH claimed AS MATERIALIZED (
    SELECT queue_id FROM notification_queue
     WHERE status IN ('pending', 'failed')
       AND coalesce(next_retry_at, created_at, '-infinity'::timestamp) <= LOCALTIMESTAMP
       AND coalesce(attempts, 0) < coalesce(max_attempts, 1)
     ORDER BY coalesce(next_retry_at, created_at, '-infinity'::timestamp)
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE notification_queue AS n
   SET status = 'processing', attempts = coalesce(n.attempts, 0) + 1, locked_by = %(worker)s,
       locked_until = LOCALTIMESTAMP + interval '2 minutes', updated_at = LOCALTIMESTAMP
  FROM claimed WHERE n.queue_id = claimed.queue_id
RETURNING n.queue_id
"""
RAW_SENT = """
UPDATE notification_queue SET status = 'sent', sent_at = LOCALTIMESTAMP, locked_by = NULL, locked_until = NULL
 WHERE queue_id = ANY(%(ids)s) AND status = 'processing' AND locked_by = %(worker)s
"""

FILL = """
INSERT INTO notification_queue (user_id, notification_type, dedup_key, title, message, send_via, created_at)
SELECT (%(users)s::uuid[])[1 + g %% 100], 'bench', 'bench-' || g,
       'Your shipment moved', 'Shipment update ' || g, ARRAY['in_app'],
       LOCALTIMESTAMP - interval '1 minute' + g * interval '1 microsecond'
  FROM generate_series(1, %(rows)s) g
"""


def fill(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE notification_queue")
        if not conn.execute("SELECT count(*) FROM users").fetchone()[0]:
            conn.execute(
                "INSERT INTO users (email, password_hash, user_type)"
                " SELECT 'bench' || g || '@example.com', 'x', 'private' FROM generate_series(1, 100) g"
            )
        users = [r[0] for r in conn.execute("SELECT user_id FROM users")]
        conn.execute(FILL, {"rows": rows, "users": users})
        conn.execute("VACUUM ANALYZE notification_queue")


def raw_worker(url: str, batch: int, index: int, start, out) -> None:
    worker = f"raw-{index}"
    sent = 0
    with psycopg.connect(url, autocommit=True) as conn:
        start.wait()
        while True:
            ids = [r[0] for r in conn.execute(RAW_CLAIM, {"batch": batch, "worker": worker})]
            if not ids:
                break
            sent += conn.execute(RAW_SENT, {"ids": ids, "worker": worker}).rowcount
    out.put(sent)


def dispatch_worker(url: str, batch: int, index: int, start, out) -> None:
    from jobs.notifications import dispatch_due
    from jobs.notifications.channels import InAppChannel

    sent = 0
    with psycopg.connect(url, autocommit=True) as conn:
        start.wait()
        while True:
            stats = dispatch_due(
                conn,
                channels={"in_app": InAppChannel()},
                batch=batch,
                time_budget_s=3600,
                worker=f"dispatch-{index}",
            )
            sent += stats.sent
            if not stats.claimed:
                break
    out.put(sent)


def run(url: str, target, rows: int, batch: int, processes: int) -> tuple[float, int]:
    fill(url, rows)
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(url, batch, i, start, out)) for i in range(processes)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every process connected and waiting
    began = time.perf_counter()
    start.set()
    counts = [out.get(timeout=600) for _ in procs]
    elapsed = time.perf_counter() - began
    for p in procs:
        p.join(30)
    with psycopg.connect(url) as conn:
        sent, distinct, reclaimed = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'sent'),"
            " count(DISTINCT queue_id) FILTER (WHERE status = 'sent'),"
            " count(*) FILTER (WHERE attempts > 1) FROM notification_queue"
        ).fetchone()
    assert sent == rows, f"{sent} of {rows} rows sent"
    duplicates = sum(counts) - distinct + reclaimed
    return rows / elapsed, duplicates


def run_actor(url: str, rows: int, batch: int, redis_url: str) -> float:
    """4 dispatch jobs through the ledger, the relay, Redis and a real worker."""
    import redis

    fill(url, rows)
    namespace = f"skyport-bench-notif-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "BROKER_URL": redis_url,
        "SKYPORT_BROKER_NAMESPACE": namespace,
        "SKYPORT_NOTIFY_BATCH": str(batch),
        "SKYPORT_NOTIFY_TIME_BUDGET_S": "600",
    }
    worker = subprocess.Popen(
        [*SKYPORT, "worker", "-p", "2", "-t", "2"],
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            deadline = time.monotonic() + 60
            while conn.execute("SELECT count(*) FROM workers").fetchone()[0] < 2:
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.1)
            os.environ.update({"BROKER_URL": redis_url, "SKYPORT_BROKER_NAMESPACE": namespace})
            import config
            from workers import JobSpec, enqueue_many

            config.get.cache_clear()
            import jobs.registry  # noqa: F401 - declares every actor: dispatch_notifications is enqueued by name

            began = time.perf_counter()
            enqueue_many([JobSpec("dispatch_notifications") for _ in range(4)], conn=conn)
            while conn.execute("SELECT count(*) FROM notification_queue WHERE status <> 'sent'").fetchone()[
                0
            ]:
                assert time.perf_counter() - began < 600, "not drained"
                time.sleep(0.05)
            return rows / (time.perf_counter() - began)
    finally:
        worker.terminate()
        worker.wait(60)
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--actor", action="store_true", help="also the actor path (worker, Redis)")
    parser.add_argument(
        "--redis-url", default=os.environ.get("SKYPORT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    args = parser.parse_args()
    with bench_database("notif") as url:
        machine(url)
        print(f"{args.rows} due in-app notifications, batch {args.batch}; plain dispatch_due per process")
        print(f"{'procs':>5} {'raw rows/s':>12} {'dispatch rows/s':>16} {'ratio':>6} {'dups':>5}")
        results = {}
        for n in args.processes:
            raw_rate, raw_dups = run(url, raw_worker, args.rows, args.batch, n)
            rate, dups = run(url, dispatch_worker, args.rows, args.batch, n)
            results[n] = (raw_rate, rate, dups)
            print(f"{n:>5} {raw_rate:>12,.0f} {rate:>16,.0f} {rate / raw_rate:>6.2f} {dups + raw_dups:>5}")
        if 4 in results:
            raw_rate, rate, dups = results[4]
            print(
                f"target 4 processes >= {TARGET_ROWS_PER_S:,} rows/s: {met(rate >= TARGET_ROWS_PER_S)}"
                f" ({rate:,.0f}); >= {TARGET_RATIO} x raw: {met(rate >= TARGET_RATIO * raw_rate)}"
                f" ({rate / raw_rate:.2f}); duplicates 0: {'met' if dups == 0 else 'NOT met'}"
            )
        if args.actor:
            rate = run_actor(url, args.rows, args.batch, args.redis_url)
            print(f"actor path (4 dispatch jobs on 2 worker processes x 2 threads): {rate:,.0f} rows/s")
        print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
