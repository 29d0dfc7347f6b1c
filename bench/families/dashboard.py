"""The dashboard's jobs list over a large ledger: server time of the first page and of filtered
pages (keyset on id), against OFFSET pagination (the peer: how rq-dashboard and many admin lists
page) at the same depth.

    .venv/bin/python -m bench.families.dashboard [--rows 1000000] [--repeat 20]

Creates its own database (migrated to head), fills `jobs` with `--rows` rows in one statement
(states, actors, queues, dedup keys and times spread like a busy week), runs ANALYZE, then times
(a) the query function `dashboard.queries.jobs_page` and (b) the whole `GET /jobs` request through
the ASGI app (login, session, query, template), `--repeat` times each; prints median and p95.
The database is dropped at the end; in Redis the bench only times a call for the machine facts
(a key of its own, deleted).
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from bench.support.facts import load_average, machine_facts

ADMIN_URL = os.environ.get("SKYPORT_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
# The budget for one page, server time.
TARGET_MS = 100.0

FILL = """
INSERT INTO jobs (actor, queue, args, kwargs, state, dedup_key, attempts, max_attempts, eta,
                  enqueued_at, enqueued_by, started_at, finished_at, worker_id, last_error, published_at)
SELECT (ARRAY['send_email','send_sms','expire_quotes','refresh_view','ensure_partitions',
              'process_payment','reconcile','ping','dispatch_notifications','prune'])[1 + g %% 10],
       (ARRAY['default','notifications','payments','maintenance'])[1 + g %% 4],
       jsonb_build_array(g, 'order-' || g),
       jsonb_build_object('customer', 'c-' || (g %% 5000), 'note', md5(g::text)),
       s.state,
       CASE WHEN g %% 5 = 0 THEN 'order:' || g END,
       CASE WHEN s.state IN ('queued','scheduled') THEN 0 ELSE 1 + g %% 3 END, 4,
       t.at, t.at, 'app',
       CASE WHEN s.state IN ('succeeded','dead','running') THEN t.at END,
       CASE WHEN s.state IN ('succeeded','dead','cancelled') THEN t.at + interval '1 second' END,
       CASE WHEN s.state IN ('succeeded','dead','running') THEN 'w-' || (g %% 8) END,
       CASE WHEN s.state IN ('dead','retrying') THEN 'ConnectionError: carrier timeout' END,
       t.at
  FROM generate_series(1, %(rows)s) AS g
 CROSS JOIN LATERAL (SELECT now() - interval '7 days' * (1 - g::float8 / %(rows)s) AS at) t
 CROSS JOIN LATERAL (SELECT CASE
        WHEN g %% 100 < 90 THEN 'succeeded' WHEN g %% 100 < 94 THEN 'dead'
        WHEN g %% 100 < 96 THEN 'retrying' WHEN g %% 100 < 98 THEN 'queued'
        WHEN g %% 100 < 99 THEN 'cancelled' ELSE 'scheduled' END AS state) s
"""


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    fn()  # warm the cache and the plan
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.95))]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.families.dashboard")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    name = f"skyport_bench_dash_{secrets.token_hex(4)}"
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", 5432)
    url = f"postgresql://{user}@{host}:{port}/{name}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        return run(url, args.rows, args.repeat)
    finally:
        from db import pool

        pool.close()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def run(url: str, rows: int, repeat: int) -> int:
    os.environ["DATABASE_URL"] = url
    os.environ["SKYPORT_SECRET_KEY"] = "bench"
    from dashboard import auth

    os.environ["SKYPORT_DASHBOARD_USERS"] = f"bench:{auth.hash_password('bench-password')}:readonly"
    import config
    from db import migrate

    config.get.cache_clear()
    print("load average before:", load_average())
    print("machine:", machine_facts(url, config.get().broker.url))
    migrate.upgrade("heads", url)
    middle, dedup = fill(url, rows)

    from starlette.testclient import TestClient

    from dashboard import queries
    from dashboard.app import create_app

    with psycopg.connect(url, autocommit=True) as conn, TestClient(create_app()) as client:
        login = client.post("/api/login", json={"username": "bench", "password": "bench-password"})
        assert login.status_code == 200, login.text
        failures = time_pages(conn, client, page_cases(dedup, middle), repeat)
        time_offset_peer(conn, middle, repeat)
        t_med, t_p95 = timed(
            lambda: queries.jobs_page(conn, queries.JobFilter(text="order-12345")), max(repeat // 4, 3)
        )
        print(f"text search 'order-12345' (a scan, not in the budget): {t_med:.1f} / {t_p95:.1f} ms")
    print("load average after:", load_average())
    print("all pages within budget" if not failures else f"{failures} case(s) over {TARGET_MS:.0f} ms")
    return 0 if not failures else 1


def fill(url: str, rows: int) -> tuple[int, str]:
    """`rows` jobs, analyzed; returns the id in the middle of the table and one dedup key."""
    start = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(FILL, {"rows": rows})
        conn.execute("VACUUM ANALYZE jobs")
        total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
        middle = conn.execute("SELECT id FROM jobs ORDER BY id OFFSET %s LIMIT 1", (total // 2,)).fetchone()[
            0
        ]
        dedup = conn.execute(
            "SELECT dedup_key FROM jobs WHERE dedup_key IS NOT NULL LIMIT 1 OFFSET 1000"
        ).fetchone()[0]
    print(f"filled {total} rows in {time.perf_counter() - start:.1f}s")
    return middle, dedup


def page_cases(dedup: str, middle: int) -> dict[str, dict[str, Any]]:
    """The pages timed: label -> the list's filter parameters (`before` for a keyset page)."""
    return {
        "first page": {},
        "state=dead": {"state": "dead"},
        "state=retrying&actor=send_sms (matches none)": {"state": "retrying", "actor": "send_sms"},
        "state=dead&actor=send_email": {"state": "dead", "actor": "send_email"},
        "queue=payments": {"queue": "payments"},
        "dedup_key=<one key>": {"dedup_key": dedup},
        "since=last hour": {"since": "now-1h"},
        "state=dead, page in the middle (before=<middle id>)": {"state": "dead", "before": middle},
    }


def time_pages(conn: psycopg.Connection, client: Any, cases: dict[str, dict[str, Any]], repeat: int) -> int:
    """Each case's query alone and its whole `GET /jobs`; returns the cases over the budget."""
    from dashboard import queries

    failures = 0
    hour_ago = conn.execute("SELECT (now() - interval '1 hour')::text").fetchone()[0].replace(" ", "T")
    print(f"{'case':<52} {'query ms (median/p95)':>22} {'GET /jobs ms (median/p95)':>26}")
    for label, params in cases.items():
        params = {k: (hour_ago if v == "now-1h" else v) for k, v in params.items()}
        before = params.pop("before", None)
        flt = queries.JobFilter.from_params(params)
        q_med, q_p95 = timed(lambda flt=flt, before=before: queries.jobs_page(conn, flt, before), repeat)
        http_params = {**params, **({"before": before} if before else {})}

        def get(http_params: dict[str, Any] = http_params) -> None:
            response = client.get("/jobs", params=http_params)
            assert response.status_code == 200, response.text[-300:]

        h_med, h_p95 = timed(get, repeat)
        flag = "" if h_med < TARGET_MS else "  OVER BUDGET"
        failures += bool(flag)
        print(f"{label:<52} {q_med:>10.1f} / {q_p95:<9.1f} {h_med:>12.1f} / {h_p95:<9.1f}{flag}")
    return failures


def time_offset_peer(conn: psycopg.Connection, middle: int, repeat: int) -> None:
    """The peer: OFFSET pagination to the same depth as the middle keyset page."""
    from dashboard import queries
    from workers import ledger_reads_sql

    depth = conn.execute("SELECT count(*) FROM jobs WHERE state = 'dead' AND id >= %s", (middle,)).fetchone()[
        0
    ]
    offset_sql = sql.SQL(
        ledger_reads_sql.JOB_LIST_PAGE.replace("LIMIT %(limit)s", "OFFSET %(offset)s LIMIT %(limit)s")
    ).format(where=sql.SQL("state = 'dead'"))
    offset_params = {"before_id": None, "offset": depth, "limit": queries.DEFAULT_PAGE_SIZE + 1}
    o_med, o_p95 = timed(lambda: conn.execute(offset_sql, offset_params).fetchall(), repeat)
    k_med, _ = timed(lambda: queries.jobs_page(conn, queries.JobFilter(state="dead"), middle), repeat)
    print(
        f"peer: OFFSET {depth} (same page) {o_med:.1f} / {o_p95:.1f} ms; keyset {k_med:.1f} ms; "
        f"OFFSET / keyset = {o_med / max(k_med, 0.001):.1f}x"
    )


if __name__ == "__main__":
    raise SystemExit(main())
