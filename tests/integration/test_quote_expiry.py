"""Quote expiry against real PostgreSQL: what expires (and what never does), the notification and
audit rows in the same transaction, idempotent re-runs, concurrent expiry workers, the plan on the
partial index, and a conversion racing the expiry on the same quote."""

from __future__ import annotations

import contextlib
import functools
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from jobs.quotes.expiry import (
    PERFORMED_BY,
    QUOTE_EXPIRE_DUE,
    expire_batch,
    expire_configured,
    expire_due_quotes,
)
from tests.integration.business_rows import make_country, make_service, make_user
from tests.integration.seed_support import quote_version
from tests.support import scalar, wait_for


def make_quote(conn: psycopg.Connection, status: str = "quoted", valid_for: str = "-1 hour") -> uuid.UUID:
    return conn.execute(
        """
        INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, quote_status,
                            quoted_price, quoted_at, valid_until)
        VALUES (%s, %s, %s, %s, %s, 100, LOCALTIMESTAMP - interval '2 days', LOCALTIMESTAMP + %s::interval)
        RETURNING quote_id
        """,
        (make_user(conn), make_country(conn), make_country(conn), make_service(conn), status, valid_for),
    ).fetchone()[0]


def status(conn: psycopg.Connection, quote_id: uuid.UUID) -> str:
    return conn.execute("SELECT quote_status FROM quotes WHERE quote_id = %s", (quote_id,)).fetchone()[0]


def notifications(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT dedup_key, user_id, notification_type, send_via FROM notification_queue ORDER BY dedup_key"
    ).fetchall()


def audits(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT record_id, performed_by, old_values->>'quote_status', new_values->>'quote_status'"
        " FROM audit_log WHERE table_name = 'quotes' ORDER BY record_id"
    ).fetchall()


def test_only_quoted_quotes_past_valid_until_expire_with_a_notification_and_an_audit_row(
    conn: psycopg.Connection,
) -> None:
    due = [make_quote(conn) for _ in range(3)]
    future = make_quote(conn, valid_for="1 day")
    accepted = make_quote(conn, status="accepted")
    rejected = make_quote(conn, status="rejected")
    versions = {q: quote_version(conn, q) for q in due}

    stats = expire_due_quotes(conn, batch=2, wake=False)

    assert (stats.expired, stats.notified, stats.batches) == (3, 3, 2)
    assert all(status(conn, q) == "expired" for q in due)
    assert all(quote_version(conn, q) == versions[q] + 1 for q in due)  # the trigger, once
    assert (status(conn, future), status(conn, accepted), status(conn, rejected)) == (
        "quoted",
        "accepted",
        "rejected",
    )
    owners = dict(conn.execute("SELECT quote_id, user_id FROM quotes").fetchall())
    assert notifications(conn) == sorted(
        (f"quote-expired:{q}", owners[q], "quote_expired", ["in_app", "email"]) for q in due
    )
    assert audits(conn) == sorted((str(q), PERFORMED_BY, "quoted", "expired") for q in due)


def test_a_rerun_changes_nothing(conn: psycopg.Connection) -> None:
    make_quote(conn)
    assert expire_due_quotes(conn, wake=False).expired == 1
    again = expire_due_quotes(conn, wake=False)
    assert (again.expired, again.notified) == (0, 0)
    assert len(notifications(conn)) == 1 and len(audits(conn)) == 1


def test_an_existing_notification_with_the_same_key_is_not_duplicated(conn: psycopg.Connection) -> None:
    quote = make_quote(conn)
    user = conn.execute("SELECT user_id FROM quotes WHERE quote_id = %s", (quote,)).fetchone()[0]
    conn.execute(
        "INSERT INTO notification_queue (user_id, notification_type, dedup_key, title, message)"
        " VALUES (%s, 'quote_expired', %s, 'earlier', 'earlier')",
        (user, f"quote-expired:{quote}"),
    )
    stats = expire_due_quotes(conn, wake=False)
    assert (stats.expired, stats.notified) == (1, 0)
    assert conn.execute("SELECT title FROM notification_queue").fetchall() == [("earlier",)]


def test_the_expiry_wakes_the_notification_dispatcher(conn: psycopg.Connection) -> None:
    make_quote(conn)
    expire_due_quotes(conn)
    assert conn.execute(
        "SELECT actor, state FROM jobs WHERE dedup_key = 'notifications:dispatch'"
    ).fetchall() == [("dispatch_notifications", "queued")]


def test_several_workers_at_once_expire_each_quote_once(database_url: str, conn: psycopg.Connection) -> None:
    user, a, b, service = make_user(conn), make_country(conn), make_country(conn), make_service(conn)
    conn.execute(
        """
        INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, quote_status,
                            valid_until)
        SELECT %s, %s, %s, %s, 'quoted', LOCALTIMESTAMP - g * interval '1 second'
          FROM generate_series(1, 3000) g
        """,
        (user, a, b, service),
    )
    barrier = threading.Barrier(4)

    def worker(_: int) -> int:
        with psycopg.connect(database_url, autocommit=True) as c:
            barrier.wait(10)
            return expire_due_quotes(c, batch=100, wake=False).expired

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(worker, range(4)))
    assert sum(counts) == 3000
    assert conn.execute("SELECT count(*) FROM quotes WHERE quote_status = 'expired'").fetchone()[0] == 3000
    assert conn.execute("SELECT count(*), count(DISTINCT dedup_key) FROM notification_queue").fetchone() == (
        3000,
        3000,
    )
    assert conn.execute("SELECT count(*), count(DISTINCT record_id) FROM audit_log").fetchone() == (
        3000,
        3000,
    )


def make_due_quotes(conn: psycopg.Connection, n: int) -> None:
    user, a, b, service = make_user(conn), make_country(conn), make_country(conn), make_service(conn)
    conn.execute(
        """
        INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, quote_status,
                            valid_until)
        SELECT %s, %s, %s, %s, 'quoted', LOCALTIMESTAMP - g * interval '1 second'
          FROM generate_series(1, %s) g
        """,
        (user, a, b, service, n),
    )


def each_quote_expired_once(conn: psycopg.Connection, n: int) -> bool:
    return conn.execute(
        """
        SELECT (SELECT count(*) FROM quotes WHERE quote_status = 'expired'),
               (SELECT count(DISTINCT dedup_key) FROM notification_queue),
               (SELECT count(*) FROM notification_queue),
               (SELECT count(DISTINCT record_id) FROM audit_log),
               (SELECT count(*) FROM audit_log)
        """
    ).fetchone() == (n, n, n, n, n)


def test_a_backlog_is_worked_by_several_loops_on_connections_of_their_own(
    database_url: str, conn: psycopg.Connection
) -> None:
    make_due_quotes(conn, 3000)
    opened: list[int] = []

    @contextlib.contextmanager
    def connect():
        with psycopg.connect(database_url, autocommit=True) as c:
            opened.append(c.info.backend_pid)
            yield c

    stats = expire_due_quotes(conn, batch=100, expirers=3, connect=connect, wake=False)

    assert (stats.expired, stats.notified, stats.expirers) == (3000, 3000, 3)
    assert len(set(opened)) == 2 and conn.info.backend_pid not in opened
    assert each_quote_expired_once(conn, 3000)


def test_no_helper_loop_when_the_first_batch_is_not_full(database_url: str, conn: psycopg.Connection) -> None:
    make_due_quotes(conn, 50)
    opened: list[str] = []

    def connect():
        opened.append("helper")
        return psycopg.connect(database_url, autocommit=True)

    stats = expire_due_quotes(conn, batch=100, expirers=4, connect=connect, wake=False)
    assert (stats.expired, stats.batches, stats.expirers, opened) == (50, 1, 1, [])


def test_a_helper_without_a_free_pooled_connection_is_left_out(database_url: str) -> None:
    pool = ConnectionPool(database_url, min_size=1, max_size=1, kwargs={"autocommit": True})
    with pool, pool.connection() as conn:  # the pool's only connection
        make_due_quotes(conn, 500)
        connect = functools.partial(pool.connection, timeout=0.2)
        stats = expire_due_quotes(conn, batch=100, expirers=2, connect=connect, wake=False)
        assert (stats.expired, stats.expirers) == (500, 1)
        assert each_quote_expired_once(conn, 500)


def test_a_failing_helper_is_raised_after_the_others_committed_and_woke_the_dispatcher(
    database_url: str, conn: psycopg.Connection
) -> None:
    make_due_quotes(conn, 500)
    missing = database_url.rsplit("/", 1)[0] + "/skyport_no_such_database"
    connect = functools.partial(psycopg.connect, missing, autocommit=True)
    with pytest.raises(psycopg.OperationalError):
        expire_due_quotes(conn, batch=100, expirers=2, connect=connect)
    assert each_quote_expired_once(conn, 500)
    assert conn.execute("SELECT actor FROM jobs WHERE dedup_key = 'notifications:dispatch'").fetchall() == [
        ("dispatch_notifications",)
    ]


def test_the_actor_runs_the_configured_loops_on_pooled_connections(
    database_url: str, conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    import config

    monkeypatch.setenv("SKYPORT_QUOTE_EXPIRY_BATCH", "100")
    monkeypatch.setenv("SKYPORT_QUOTE_EXPIRY_EXPIRERS", "2")
    config.get.cache_clear()
    make_due_quotes(conn, 1000)
    stats = expire_configured(conn)
    assert (stats.expired, stats.expirers) == (1000, 2)
    assert each_quote_expired_once(conn, 1000)


def test_the_claim_walks_the_partial_valid_until_index(conn: psycopg.Connection) -> None:
    user, a, b, service = make_user(conn), make_country(conn), make_country(conn), make_service(conn)
    conn.execute(
        """
        INSERT INTO quotes (user_id, origin_country_id, destination_country_id, service_id, quote_status,
                            valid_until)
        SELECT %s, %s, %s, %s,
               CASE WHEN g %% 5 = 0 THEN 'quoted' ELSE (ARRAY['accepted', 'rejected'])[1 + g %% 2] END,
               LOCALTIMESTAMP + (g %% 100 - 90) * interval '1 hour'
          FROM generate_series(1, 40000) g
        """,
        (user, a, b, service),
    )
    conn.execute("ANALYZE quotes")
    plan = "\n".join(
        r[0]
        for r in conn.execute(
            "EXPLAIN " + QUOTE_EXPIRE_DUE,
            {"batch": 1000, "performed_by": PERFORMED_BY, "send_via": ["in_app"]},
        )
    )
    assert "idx_quotes_valid_until" in plan, plan
    assert "Seq Scan on quotes" not in plan, plan
    assert "Sort" not in plan.split("CTE expired")[0], plan  # index order, no sort of every due quote


def accept_and_convert(conn: psycopg.Connection, quote_id: uuid.UUID, hold: threading.Event | None = None):
    """The customer accepts the quote (if still quoted) and converts it, in one transaction."""
    with conn.transaction():
        accepted = conn.execute(
            "UPDATE quotes SET quote_status = 'accepted' WHERE quote_id = %s AND quote_status = 'quoted'"
            " RETURNING version",
            (quote_id,),
        ).fetchone()
        if hold is not None:
            hold.wait(10)
        if accepted is None:
            raise LookupError("quote is no longer quoted")
        return conn.execute("SELECT convert_quote_to_shipment(%s, %s)", (quote_id, accepted[0])).fetchone()[0]


def outcome(conn: psycopg.Connection, quote_id: uuid.UUID) -> tuple[str, int, int, int]:
    return conn.execute(
        """
        SELECT q.quote_status,
               (SELECT count(*) FROM shipments s WHERE s.quote_id = q.quote_id),
               (SELECT count(*) FROM notification_queue n WHERE n.dedup_key = 'quote-expired:' || q.quote_id),
               (SELECT count(*) FROM audit_log a WHERE a.record_id = q.quote_id::text)
          FROM quotes q WHERE q.quote_id = %s
        """,
        (quote_id,),
    ).fetchone()


CONVERTED = ("converted", 1, 0, 0)
EXPIRED = ("expired", 0, 1, 1)


def test_a_conversion_holding_the_quote_makes_the_expiry_skip_it(database_url: str, conn) -> None:
    quote = make_quote(conn)
    hold, started = threading.Event(), threading.Event()

    def convert() -> Any:
        with psycopg.connect(database_url, autocommit=True) as c:
            started.set()
            return accept_and_convert(c, quote, hold)

    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(convert)
        started.wait(5)
        # Until the conversion's UPDATE holds the row lock (it then waits on `hold`).
        wait_for(
            lambda: scalar(
                database_url,
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"
                " AND query LIKE 'UPDATE quotes SET quote_status%'",
            ),
            10,
            what="the conversion to hold the quote",
        )
        assert expire_due_quotes(conn, wake=False).expired == 0  # skipped, not waited for
        hold.set()
        future.result(10)
    assert outcome(conn, quote) == CONVERTED


def test_an_expiry_holding_the_quote_makes_the_conversion_fail(database_url: str, conn) -> None:
    quote = make_quote(conn)

    def convert() -> Any:
        with psycopg.connect(database_url, autocommit=True) as c:
            return accept_and_convert(c, quote)

    with ThreadPoolExecutor(1) as pool:
        with conn.transaction():
            assert expire_batch(conn, 10)[0] == 1  # expired, not yet committed
            future = pool.submit(convert)
            wait_for(
                lambda: scalar(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE quotes SET quote_status%'",
                ),
                10,
                what="the conversion to wait on the quote's lock",
            )
            assert not future.done()
        with pytest.raises(LookupError):
            future.result(10)
    assert outcome(conn, quote) == EXPIRED


def test_conversions_racing_expiries_end_in_exactly_one_outcome(database_url: str, conn) -> None:
    quotes = [make_quote(conn) for _ in range(40)]
    barrier = threading.Barrier(3)

    def converter() -> None:
        with psycopg.connect(database_url, autocommit=True) as c:
            barrier.wait(10)
            for q in quotes:
                with contextlib.suppress(LookupError, psycopg.Error):
                    accept_and_convert(c, q)

    def expirer(expirers: int) -> None:
        connect = functools.partial(psycopg.connect, database_url, autocommit=True)
        with psycopg.connect(database_url, autocommit=True) as c:
            barrier.wait(10)
            for _ in range(40):
                expire_due_quotes(
                    c, batch=1, wake=False, time_budget_s=0.01, expirers=expirers, connect=connect
                )

    with ThreadPoolExecutor(3) as pool:
        for f in [pool.submit(converter), pool.submit(expirer, 1), pool.submit(expirer, 2)]:
            f.result(60)
    expire_due_quotes(conn, wake=False)  # whatever the race left quoted
    results = [outcome(conn, q) for q in quotes]
    assert all(r in (CONVERTED, EXPIRED) for r in results), results
