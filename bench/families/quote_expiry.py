"""Quote expiry: time to expire E quotes past `valid_until` (with their notification and audit rows)
in a table of M quotes, then the same E in a table of 5 x M: the cost must follow the expired rows,
not the table.

    .venv/bin/python -m bench.families.quote_expiry [--quotes 1000000] [--expired 100000] [--scale 5]
                                                    [--batch 1000] [--expirers 2]

The table: E `quoted` quotes past valid_until, and M - E others (quoted and valid for a while, or
accepted / converted / rejected / expired with any valid_until). For each size, after VACUUM
ANALYZE and a CHECKPOINT:
  expiry  `jobs.quotes.expiry.expire_due_quotes` as the actor runs it: `--expirers` loops at once
          (SKYPORT_QUOTE_EXPIRY_EXPIRERS, default 2), each with its own connection (claim on
          idx_quotes_valid_until in valid_until order, FOR UPDATE SKIP LOCKED; expire + notification
          + audit in one statement per batch);
  peer    a bare batched UPDATE of the same rows in valid_until order (same claim, status only),
          after the expired quotes were put back to `quoted` and vacuumed: one loop (the issue's
          reference), then as many loops as the expiry (the ratio compares these).
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import threading
import time

import psycopg

from bench.families.common import bench_database, machine, uptime
from jobs.quotes.expiry import DEFAULT_EXPIRERS, expire_due_quotes

TARGET_QUOTES_PER_S = 20_000
TARGET_SCALE_FACTOR = 1.5

# -- bench_bare_expire -- the peer: the same claim, the status change only.
BARE_EXPIRE = """
WITH claimed AS MATERIALIZED (
    SELECT quote_id FROM quotes
     WHERE quote_status = 'quoted' AND valid_until < LOCALTIMESTAMP
     ORDER BY valid_until
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE quotes AS q SET quote_status = 'expired'
  FROM claimed WHERE q.quote_id = claimed.quote_id AND q.quote_status = 'quoted'
"""

# Others: quoted and still valid (in the partial index, never due), or in another state (not in it).
FILL_OTHERS = """
INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, quote_status,
                    quoted_price, valid_until)
SELECT (%(users)s::uuid[])[1 + g %% 100], %(a)s, %(b)s, %(service)s,
       (ARRAY['quoted', 'accepted', 'converted', 'rejected', 'expired'])[1 + g %% 5], 100,
       CASE WHEN g %% 5 = 0 THEN LOCALTIMESTAMP + interval '1 day' + g * interval '1 second'
            ELSE LOCALTIMESTAMP - interval '1 day' + (g %% 100000) * interval '1 second' END
  FROM generate_series(%(first)s, %(last)s) g
"""
FILL_DUE = """
INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, quote_status,
                    quoted_price, valid_until, cargo_description)
SELECT (%(users)s::uuid[])[1 + g %% 100], %(a)s, %(b)s, %(service)s, 'quoted', 100,
       LOCALTIMESTAMP - interval '1 hour' - g * interval '10 millisecond', 'bench-due'
  FROM generate_series(1, %(n)s) g
"""
# Back to the starting point: the due quotes quoted again, their notifications and audit rows gone
# (TRUNCATE, not DELETE: with autovacuum off, deleted rows would stay in the indexes under the same
# dedup keys and record ids, and the next size's expiry would step over them on every insert).
RESET = (
    "UPDATE quotes SET quote_status = 'quoted'"
    " WHERE cargo_description = 'bench-due' AND quote_status <> 'quoted'",
    "TRUNCATE notification_queue, audit_log",
)


def seed_reference(conn: psycopg.Connection) -> dict:
    users = [
        r[0]
        for r in conn.execute(
            "INSERT INTO users (email, password_hash, user_type)"
            " SELECT 'q' || g || '@example.com', 'x', 'business' FROM generate_series(1, 100) g"
            " RETURNING user_id"
        )
    ]
    a, b = (
        conn.execute(
            "INSERT INTO countries (country_code, country_name) VALUES (%s, %s) RETURNING country_id", (c, c)
        ).fetchone()[0]
        for c in ("QA1", "QB2")
    )
    service = conn.execute(
        "INSERT INTO freight_services (service_name, service_type) VALUES ('bench', 'sea')"
        " RETURNING service_id"
    ).fetchone()[0]
    return {"users": users, "a": a, "b": b, "service": service}


def fill_others(conn: psycopg.Connection, ref: dict, first: int, last: int, chunk: int = 250_000) -> None:
    for start in range(first, last + 1, chunk):
        conn.execute(FILL_OTHERS, {**ref, "first": start, "last": min(last, start + chunk - 1)})


def settle(conn: psycopg.Connection) -> None:
    """Before a timing: VACUUM ANALYZE (the reset's dead versions gone, hint bits set), then a
    CHECKPOINT, so that no timing shares the disk with the checkpoint the fill's or the reset's WAL
    started, and each starts alike: every page's first change writes its full image to the WAL."""
    conn.execute("VACUUM ANALYZE quotes")
    conn.execute("CHECKPOINT")


def timed_expiry(url: str, conn: psycopg.Connection, batch: int, expected: int, expirers: int) -> float:
    settle(conn)
    connect = functools.partial(psycopg.connect, url, autocommit=True)
    began = time.perf_counter()
    stats = expire_due_quotes(
        conn, batch=batch, time_budget_s=3600, wake=False, expirers=expirers, connect=connect
    )
    elapsed = time.perf_counter() - began
    notes, audits = conn.execute(
        "SELECT (SELECT count(*) FROM notification_queue), (SELECT count(*) FROM audit_log)"
    ).fetchone()
    assert stats.expired == expected and notes == expected and audits == expected, (stats, notes, audits)
    assert stats.expirers == expirers, stats
    return elapsed


def timed_bare(url: str, conn: psycopg.Connection, batch: int, expected: int, loops: int) -> float:
    for statement in RESET:
        conn.execute(statement)
    settle(conn)
    counts = [0] * loops
    start = threading.Barrier(loops + 1)

    def loop(i: int) -> None:
        with psycopg.connect(url, autocommit=True) as c:
            start.wait()
            while True:
                n = c.execute(BARE_EXPIRE, {"batch": batch}).rowcount
                counts[i] += n
                if n < batch:
                    break

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(loops)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    assert sum(counts) == expected, counts
    return elapsed


def code_version() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(["git", *argv], capture_output=True, text=True).stdout.strip()

    changed = git("status", "--porcelain", "--", "jobs/quotes", "bench/families/quote_expiry.py")
    return git("rev-parse", "--short", "HEAD") + (" (jobs/quotes or this bench changed)" if changed else "")


def met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quotes", type=int, default=1_000_000)
    parser.add_argument("--expired", type=int, default=100_000)
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--expirers", type=int, default=DEFAULT_EXPIRERS)
    args = parser.parse_args()
    with bench_database("quotes") as url, psycopg.connect(url, autocommit=True) as conn:
        machine(url)
        print(f"code: {code_version()}, --batch {args.batch}, --expirers {args.expirers}")
        ref = seed_reference(conn)
        results = {}
        filled = 0
        for size in (args.quotes, args.quotes * args.scale):
            began = time.perf_counter()
            if filled == 0:
                conn.execute(FILL_DUE, {**ref, "n": args.expired})
                filled = args.expired
            fill_others(conn, ref, filled + 1, size)
            filled = size
            print(f"{size:,} quotes ({args.expired:,} due), filled in {time.perf_counter() - began:.0f} s")
            bare1_s = timed_bare(url, conn, args.batch, args.expired, 1)
            bare_s = timed_bare(url, conn, args.batch, args.expired, args.expirers)
            for statement in RESET:
                conn.execute(statement)
            expiry_s = timed_expiry(url, conn, args.batch, args.expired, args.expirers)
            results[size] = expiry_s
            print(
                f"  expiry, {args.expirers} loops: {expiry_s:.2f} s = {args.expired / expiry_s:,.0f} quotes/s"
                " (with notification + audit);"
                f" peer bare UPDATE, 1 loop: {bare1_s:.2f} s = {args.expired / bare1_s:,.0f} rows/s,"
                f" {args.expirers} loops: {bare_s:.2f} s = {args.expired / bare_s:,.0f} rows/s;"
                f" expiry / peer ({args.expirers} loops each) = {bare_s / expiry_s:.2f}"
            )
            # For the next size: the due quotes back to quoted, no notification or audit row.
            for statement in RESET:
                conn.execute(statement)
        small, large = results[args.quotes], results[args.quotes * args.scale]
        print(
            f"target >= {TARGET_QUOTES_PER_S:,} quotes/s at {args.quotes:,}: "
            f"{met(args.expired / small >= TARGET_QUOTES_PER_S)}; "
            f"time at {args.quotes * args.scale:,} / at {args.quotes:,} = {large / small:.2f} "
            f"(target <= {TARGET_SCALE_FACTOR}: {met(large / small <= TARGET_SCALE_FACTOR)})"
        )
        print(f"load after: {uptime()}")


if __name__ == "__main__":
    main()
