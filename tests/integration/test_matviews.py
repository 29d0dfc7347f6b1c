"""Materialized-view refreshes against a real PostgreSQL: concurrent vs plain, readers never
blocked, single flight, timeouts, history and staleness, debounced requests."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

import config
from jobs.matviews import refresh, staleness
from jobs.matviews.actors import request_refresh
from jobs.matviews.registry import MaterializedView
from tests.support import wait_for

# -- the view's defining query (the migration's), to compare the refreshed contents with.
STATISTICS_QUERY = """
SELECT DATE_TRUNC('day', created_at) AS date, shipment_status,
       COUNT(*) AS count, AVG(total_cost) AS avg_cost
  FROM shipments GROUP BY DATE_TRUNC('day', created_at), shipment_status
"""
SEED_SHIPMENTS = """
WITH u AS (INSERT INTO users (email, password_hash, user_type) VALUES (%(email)s, 'x', 'private')
           RETURNING user_id),
     c AS (INSERT INTO countries (country_code, country_name) VALUES (%(a)s, 'A'), (%(b)s, 'B')
           RETURNING country_id),
     s AS (INSERT INTO freight_services (service_name, service_type) VALUES ('Sea', 'sea')
           RETURNING service_id)
INSERT INTO shipments (tracking_number, user_id, service_id, origin_country_id, destination_country_id,
                       shipment_status, total_cost, created_at)
SELECT %(prefix)s || g, u.user_id, s.service_id,
       (SELECT min(country_id) FROM c), (SELECT max(country_id) FROM c),
       (ARRAY['pending', 'in_transit', 'delivered'])[1 + g %% 3], (g %% 97)::numeric,
       timestamp '2026-01-01' + (g %% 40) * interval '1 day' + (g %% 1440) * interval '1 minute'
  FROM generate_series(1, %(n)s) g, u, s
"""


def seed(conn: psycopg.Connection, n: int, tag: str = "a") -> None:
    conn.execute(
        SEED_SHIPMENTS,
        {"email": f"{tag}@example.test", "a": f"A{tag}", "b": f"B{tag}", "prefix": f"T{tag}-", "n": n},
    )


def differs(conn: psycopg.Connection) -> int:
    """Rows in one of the view and the defining query but not the other."""
    return (
        conn.execute(
            f"SELECT count(*) FROM (({STATISTICS_QUERY}) EXCEPT SELECT * FROM shipment_statistics) a"
        ).fetchone()[0]
        + conn.execute(
            f"SELECT count(*) FROM (SELECT * FROM shipment_statistics EXCEPT ({STATISTICS_QUERY})) b"
        ).fetchone()[0]
    )


def history(conn: psycopg.Connection, view: str) -> list[tuple]:
    return conn.execute(
        "SELECT outcome, mode, rows, error FROM matview_refreshes WHERE view_name = %s ORDER BY id", (view,)
    ).fetchall()


def test_concurrent_refresh_equals_the_defining_query_and_is_recorded(conn: psycopg.Connection) -> None:
    seed(conn, 3000)
    assert differs(conn) > 0  # stale before
    result = refresh.refresh_view(conn, "shipment_statistics")
    assert (result.outcome, result.mode) == ("succeeded", "concurrent")
    assert differs(conn) == 0
    expected_rows = conn.execute(f"SELECT count(*) FROM ({STATISTICS_QUERY}) q").fetchone()[0]
    assert result.rows == expected_rows == 120  # 40 days x 3 statuses
    assert history(conn, "shipment_statistics") == [("succeeded", "concurrent", 120, None)]
    [row] = [s for s in staleness(conn) if s.view == "shipment_statistics"]
    assert row.last_outcome == "succeeded" and not row.stale and row.rows == 120
    assert row.staleness_s is not None and row.staleness_s < 60
    never = next(s for s in staleness(conn) if s.view == "active_countries")
    assert never.last_success_at is None and never.stale
    later = staleness(conn, now=datetime.now(UTC) + timedelta(hours=1))
    assert [s.stale for s in later] == [True, True]  # 15 min interval: stale after 30 min


def test_readers_are_never_blocked_by_a_concurrent_refresh(
    conn: psycopg.Connection, database_url: str
) -> None:
    seed(conn, 2000)
    refresh.refresh_view(conn, "shipment_statistics")
    seed(conn, 1000, "b")
    # Hold the refresh mid-flight: it has locked the view and waits to read shipments.
    holder = psycopg.connect(database_url)
    holder.execute("LOCK TABLE shipments IN ACCESS EXCLUSIVE MODE")
    outcome: dict[str, object] = {}

    def run(mode: str) -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            try:
                outcome[mode] = refresh.refresh_view(own, "shipment_statistics", force_mode=mode)
            except Exception as exc:  # reported by the assertions below
                outcome[mode] = exc

    def refresh_waiting() -> bool:
        return (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'REFRESH MATERIALIZED VIEW%%'"
                " AND wait_event_type = 'Lock'"
            ).fetchone()[0]
            == 1
        )

    try:
        thread = threading.Thread(target=run, args=("concurrent",))
        thread.start()
        wait_for(refresh_waiting, 10, what="the concurrent refresh to be in progress")
        with psycopg.connect(database_url, autocommit=True) as reader:
            reader.execute("SET statement_timeout = '5s'")
            assert reader.execute("SELECT sum(count) FROM shipment_statistics").fetchone()[0] == 2000
        assert thread.is_alive()  # the refresh was still running while the reader completed
    finally:
        holder.rollback()
    thread.join(30)
    assert outcome["concurrent"].outcome == "succeeded", outcome
    assert differs(conn) == 0

    # For contrast: during a plain refresh the same reader waits (and here gives up).
    seed(conn, 10, "c")
    holder.execute("LOCK TABLE shipments IN ACCESS EXCLUSIVE MODE")
    try:
        thread = threading.Thread(target=run, args=("plain",))
        thread.start()
        wait_for(refresh_waiting, 10, what="the plain refresh to be in progress")
        with psycopg.connect(database_url, autocommit=True) as reader:
            reader.execute("SET lock_timeout = '300ms'")
            with pytest.raises(errors.LockNotAvailable):
                reader.execute("SELECT sum(count) FROM shipment_statistics")
    finally:
        holder.rollback()
        holder.close()
    thread.join(30)
    assert outcome["plain"].outcome == "succeeded", outcome
    assert differs(conn) == 0


def test_single_flight_statement_timeout_and_abandoned_rows(
    conn: psycopg.Connection, database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A refresh of the view runs elsewhere: this one is skipped, and says so.
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute(
            "SELECT pg_advisory_lock(%s, hashtext('active_countries'))", (refresh.ADVISORY_LOCK_CLASS,)
        )
        assert refresh.refresh_view(conn, "active_countries").outcome == "skipped"
        other.execute(
            "SELECT pg_advisory_unlock(%s, hashtext('active_countries'))", (refresh.ADVISORY_LOCK_CLASS,)
        )
    assert history(conn, "active_countries") == [
        ("skipped", None, None, "a refresh of this view was already running")
    ]
    # A dead worker's 'running' row is closed by the next refresh, which holds the lock.
    conn.execute(
        "INSERT INTO matview_refreshes (view_name, mode, outcome)"
        " VALUES ('active_countries', 'plain', 'running')"
    )
    assert refresh.refresh_view(conn, "active_countries").outcome == "succeeded"
    assert [h[0] for h in history(conn, "active_countries")] == ["skipped", "abandoned", "succeeded"]

    # statement_timeout per view (configured in the maintenance file): the failure is recorded.
    path = tmp_path / "m.toml"
    path.write_text("[matviews.shipment_statistics]\nstatement_timeout_s = 0.3\n")
    monkeypatch.setenv("SKYPORT_MAINTENANCE_FILE", str(path))
    config.get.cache_clear()
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE shipments IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(errors.QueryCanceled):
            refresh.refresh_view(conn, "shipment_statistics")
    [(outcome, mode, rows, error)] = history(conn, "shipment_statistics")
    assert (outcome, mode, rows) == ("failed", "concurrent", None)
    assert "statement timeout" in error
    [status] = [s for s in staleness(conn) if s.view == "shipment_statistics"]
    assert status.last_outcome == "failed" and status.last_success_at is None and status.stale


def test_plain_refresh_when_concurrently_is_impossible_and_views_added_by_configuration(
    conn: psycopg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn.execute(
        "CREATE MATERIALIZED VIEW status_counts AS SELECT shipment_status, count(*) FROM shipments "
        "GROUP BY 1 WITH NO DATA"
    )
    path = tmp_path / "m.toml"
    path.write_text("[matviews.status_counts]\ninterval_s = 60\n")
    monkeypatch.setenv("SKYPORT_MAINTENANCE_FILE", str(path))
    config.get.cache_clear()
    seed(conn, 30)
    with caplog.at_level(logging.WARNING, "skyport.matviews"):
        first = refresh.refresh_view(conn, "status_counts")
        second = refresh.refresh_view(conn, "status_counts")
    assert (first.mode, second.mode) == ("plain", "plain")
    assert "not populated yet" in caplog.text and "no unique index" in caplog.text
    assert second.rows == 3
    assert [s.view for s in staleness(conn)] == ["active_countries", "shipment_statistics", "status_counts"]
    with pytest.raises(refresh.UnknownView, match="not in the registry"):
        refresh.refresh_view(conn, "no_such_view")
    with pytest.raises(refresh.UnknownView, match="no materialized view"):
        refresh.refresh_view(conn, MaterializedView("shipments", interval_s=60))


def test_requests_within_the_debounce_window_collapse_into_one_job(conn: psycopg.Connection) -> None:
    t0 = datetime(2026, 11, 23, 12, 0, 1, tzinfo=UTC)  # debounce 10 s: the window ends at 12:00:10
    refs = [request_refresh("shipment_statistics", now=t0 + timedelta(seconds=s)) for s in (0, 3, 8.9)]
    assert len({r.id for r in refs}) == 1 and [r.created for r in refs] == [True, False, False]
    later = request_refresh("shipment_statistics", now=t0 + timedelta(seconds=9.5))
    other_view = request_refresh("active_countries", now=t0)
    assert later.id != refs[0].id and later.created and other_view.id not in (refs[0].id, later.id)
    eta, actor, args = conn.execute(
        "SELECT eta, actor, args FROM jobs WHERE id = %s", (refs[0].id,)
    ).fetchone()
    assert (eta, actor, args) == (
        datetime(2026, 11, 23, 12, 0, 10, tzinfo=UTC),
        "refresh_matview_requested",
        ["shipment_statistics"],
    )
    with pytest.raises(refresh.UnknownView):
        request_refresh("nope")
