"""Partition maintenance against a real PostgreSQL, with a pinned clock (`today=`)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import psycopg
import pytest
import sentry_sdk

import config
from jobs.partitions import maintain
from jobs.partitions import status as coverage
from jobs.partitions.registry import DEFAULT_TABLES, Interval, PartitionedTable, load_tables
from skyport import main as cli
from tests.support import wait_for

TRACKING, AUDIT = DEFAULT_TABLES


def bounds(conn: psycopg.Connection, parent: str) -> dict[str, str]:
    with conn.transaction():
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        rows = conn.execute(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass""",
            (parent,),
        ).fetchall()
    return dict(rows)


def use_maintenance_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, text: str) -> None:
    path = tmp_path / "maintenance.toml"
    path.write_text(text)
    monkeypatch.setenv("SKYPORT_MAINTENANCE_FILE", str(path))
    config.get.cache_clear()


def test_year_boundary_december_to_january(conn: psycopg.Connection) -> None:
    results = maintain.ensure_partitions(conn, [AUDIT], today=date(2026, 12, 15))
    assert results[0].outcome == "ok"
    parts = bounds(conn, "audit_log")
    assert parts["audit_log_2026_12"] == "FOR VALUES FROM ('2026-12-01 00:00:00') TO ('2027-01-01 00:00:00')"
    assert parts["audit_log_2027_01"] == "FOR VALUES FROM ('2027-01-01 00:00:00') TO ('2027-02-01 00:00:00')"
    assert parts["audit_log_2027_03"] == "FOR VALUES FROM ('2027-03-01 00:00:00') TO ('2027-04-01 00:00:00')"
    [cov] = coverage.coverage(conn, [AUDIT], today=date(2026, 12, 31))
    assert (cov.status, cov.ahead, cov.last_covered) == ("ok", 3, date(2027, 3, 31))
    # New Year's Eve and New Year's Day both land in their own month.
    conn.execute(
        "INSERT INTO audit_log (table_name, record_id, action, created_at) VALUES "
        "('t', '1', 'INSERT', '2026-12-31 23:59:59.999'), ('t', '2', 'INSERT', '2027-01-01 00:00:00')"
    )
    where = dict(conn.execute("SELECT record_id, tableoid::regclass::text FROM audit_log").fetchall())
    assert where == {"1": "audit_log_2026_12", "2": "audit_log_2027_01"}
    # Indexes come from the parent.
    idx = conn.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 'audit_log_2027_03'").fetchone()[0]
    assert idx == 5  # primary key + the four indexes of audit_log (people's actions: 0012_audit_people)
    # Once everything exists, ensuring is a quick check without DDL.
    started = time.perf_counter()
    again = maintain.ensure_partitions(conn, [AUDIT], today=date(2026, 12, 15))
    assert again[0].created == [] and again[0].outcome == "ok"
    assert time.perf_counter() - started < 1.0  # bench/families/maintenance.py measures it (< 50 ms)


def test_leap_year_february_monthly_and_daily(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    conn.execute(
        "CREATE TABLE sensor_readings (id bigint, taken_at timestamptz NOT NULL)"
        " PARTITION BY RANGE (taken_at)"
    )
    conn.execute(
        "CREATE TABLE shipments_by_year (id bigint, created_at date NOT NULL) PARTITION BY RANGE (created_at)"
    )
    # Added by configuration only.
    use_maintenance_file(
        monkeypatch,
        tmp_path,
        '[partitions.sensor_readings]\nkey = "taken_at"\ninterval = "day"\npremake = 3\nretention = 7\n'
        '[partitions.shipments_by_year]\nkey = "created_at"\ninterval = "year"\npremake = 1\n',
    )
    tables = load_tables()
    assert [t.parent for t in tables][-2:] == ["sensor_readings", "shipments_by_year"]
    results = maintain.ensure_partitions(conn, today=date(2028, 2, 27))
    assert {r.parent: r.outcome for r in results} == dict.fromkeys([t.parent for t in tables], "ok")

    days = bounds(conn, "sensor_readings")
    assert sorted(days) == [f"sensor_readings_2028_02_{d}" for d in (27, 28, 29)] + [
        "sensor_readings_2028_03_01"
    ]
    assert days["sensor_readings_2028_02_29"] == (
        "FOR VALUES FROM ('2028-02-29 00:00:00+00') TO ('2028-03-01 00:00:00+00')"
    )
    assert bounds(conn, "audit_log")["audit_log_2028_02"] == (
        "FOR VALUES FROM ('2028-02-01 00:00:00') TO ('2028-03-01 00:00:00')"
    )
    assert sorted(bounds(conn, "shipments_by_year")) == ["shipments_by_year_2028", "shipments_by_year_2029"]
    conn.execute("INSERT INTO sensor_readings VALUES (1, '2028-02-29 23:30:00+00')")
    conn.execute(
        "INSERT INTO audit_log (table_name, record_id, action, created_at) VALUES ('t', '1', 'INSERT', "
        "'2028-02-29 12:00')"
    )
    assert conn.execute("SELECT tableoid::regclass::text FROM sensor_readings").fetchone()[0] == (
        "sensor_readings_2028_02_29"
    )
    assert conn.execute("SELECT tableoid::regclass::text FROM audit_log").fetchone()[0] == "audit_log_2028_02"
    conn.execute("SET TimeZone = 'Pacific/Auckland'")  # bounds are read in UTC whatever the session's zone
    covered = {c.parent: c for c in coverage.coverage(conn, today=date(2028, 2, 29))}
    assert conn.execute("SHOW TimeZone").fetchone()[0] == "Pacific/Auckland"  # and it is put back
    assert (covered["sensor_readings"].ahead, covered["sensor_readings"].status) == (1, "warning")
    assert covered["shipments_by_year"].last_covered == date(2029, 12, 31)
    # Day retention: a week later the days before 2028-02-29 are dropped, the rest kept.
    maintain.ensure_partitions(conn, today=date(2028, 3, 7))
    maintain.apply_retention(conn, today=date(2028, 3, 7))
    remaining = sorted(bounds(conn, "sensor_readings"))
    assert remaining[0] == "sensor_readings_2028_02_29" and "sensor_readings_2028_02_28" not in remaining


def test_rows_waiting_in_the_default_partition_move_into_the_new_partition(conn: psycopg.Connection) -> None:
    conn.execute("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT")
    conn.execute(
        "INSERT INTO audit_log (table_name, record_id, action, created_at, reason) VALUES "
        "('t', 'a', 'INSERT', '2031-05-01 00:00', 'first instant'), "
        "('t', 'b', 'UPDATE', '2031-05-31 23:59:59', 'last instant'), "
        "('t', 'c', 'DELETE', '2031-09-10 08:00', 'beyond the horizon')"
    )
    [result] = maintain.ensure_partitions(conn, [AUDIT], today=date(2031, 5, 2))
    assert result.outcome == "ok"
    assert result.created == [f"audit_log_2031_{m:02d}" for m in (5, 6, 7, 8)]
    assert result.moved_rows == {"audit_log_2031_05": 2}
    where = dict(conn.execute("SELECT record_id, tableoid::regclass::text FROM audit_log").fetchall())
    assert where == {"a": "audit_log_2031_05", "b": "audit_log_2031_05", "c": "audit_log_default"}
    # Moved whole: ids and values unchanged.
    assert conn.execute("SELECT reason FROM audit_log WHERE record_id = 'b'").fetchone()[0] == "last instant"


def test_retention_drops_expired_only_detaches_when_archiving_never_touches_others(
    conn: psycopg.Connection,
) -> None:
    conn.execute("CREATE TABLE other_events (at timestamp NOT NULL) PARTITION BY RANGE (at)")
    conn.execute(
        "CREATE TABLE other_events_2020_01 PARTITION OF other_events"
        " FOR VALUES FROM ('2020-01-01') TO ('2020-02-01')"
    )
    maintain.ensure_partitions(conn, [TRACKING, AUDIT], today=date(2024, 1, 15))
    results = maintain.apply_retention(conn, [TRACKING, AUDIT], today=date(2026, 4, 10))
    # 24 months kept before April 2026: from April 2024 on.
    assert results == [
        maintain.TableResult(
            "shipment_tracking_events",
            detached=[f"shipment_tracking_events_2024_{m:02d}" for m in (1, 2, 3)],
            dropped=[f"shipment_tracking_events_2024_{m:02d}" for m in (1, 2, 3)],
        )
    ]
    names = set(bounds(conn, "shipment_tracking_events"))
    assert "shipment_tracking_events_2024_04" in names and "shipment_tracking_events_2024_03" not in names
    assert conn.execute("SELECT to_regclass('shipment_tracking_events_2024_01')").fetchone()[0] is None
    assert {"audit_log_2024_01", "audit_log_2024_04"} <= set(bounds(conn, "audit_log"))  # no retention
    assert set(bounds(conn, "other_events")) == {"other_events_2020_01"}  # not in the registry

    # Archiving, on a table with a DEFAULT partition (no CONCURRENTLY then): detached, not dropped.
    conn.execute("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT")
    [archived] = maintain.apply_retention(
        conn, [replace(AUDIT, retention=24, archive=True)], today=date(2026, 4, 10)
    )
    assert archived.detached == ["audit_log_2024_01", "audit_log_2024_02", "audit_log_2024_03"]
    assert archived.dropped == []
    assert conn.execute("SELECT to_regclass('audit_log_2024_01')").fetchone()[0] is not None
    assert "audit_log_2024_01" not in bounds(conn, "audit_log")


def test_another_worker_holding_the_table_lock_means_busy(
    conn: psycopg.Connection, database_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s, hashtext('audit_log'))", (maintain.ADVISORY_LOCK_CLASS,))
        [busy] = maintain.ensure_partitions(conn, [AUDIT], today=date(2032, 1, 1))
        assert (busy.outcome, busy.created) == ("busy", [])
        # (Explicitly: a closed connection's session ends on the server a moment later.)
        other.execute("SELECT pg_advisory_unlock(%s, hashtext('audit_log'))", (maintain.ADVISORY_LOCK_CLASS,))
    [done] = maintain.ensure_partitions(conn, [AUDIT], today=date(2032, 1, 1))
    assert done.created == [f"audit_log_2032_{m:02d}" for m in (1, 2, 3, 4)]


def test_ddl_gives_up_behind_a_long_transaction_and_succeeds_later(
    conn: psycopg.Connection, database_url: str
) -> None:
    reader = psycopg.connect(database_url)
    try:
        reader.execute("SELECT count(*) FROM audit_log")  # holds ACCESS SHARE until it ends
        started = time.monotonic()
        [blocked] = maintain.ensure_partitions(conn, [AUDIT], today=date(2033, 6, 1), lock_timeout_s=0.3)
        assert blocked.outcome == "lock_timeout" and "lock timeout" in (blocked.error or "")
        assert time.monotonic() - started < 10
        # Meanwhile others can still use the table (nothing queued behind the DDL).
        with psycopg.connect(database_url, autocommit=True) as third:
            third.execute("SET lock_timeout = '2s'")
            third.execute("INSERT INTO audit_log (table_name, record_id, action) VALUES ('t', 'x', 'INSERT')")
    finally:
        reader.close()
    [done] = maintain.ensure_partitions(conn, [AUDIT], today=date(2033, 6, 1), lock_timeout_s=0.3)
    assert done.outcome == "ok" and "audit_log_2033_06" in done.created


def test_two_workers_racing_create_each_partition_once(conn: psycopg.Connection, database_url: str) -> None:
    outcomes: list[maintain.TableResult] = []

    def run() -> None:
        with psycopg.connect(database_url, autocommit=True) as own:
            outcomes.extend(maintain.ensure_partitions(own, [AUDIT], today=date(2034, 3, 3)))

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r.outcome in ("ok", "busy") for r in outcomes), outcomes
    created = sorted(name for r in outcomes for name in r.created)
    assert len(created) == len(set(created))
    wait_for(lambda: {f"audit_log_2034_{m:02d}" for m in (3, 4, 5, 6)} <= set(bounds(conn, "audit_log")), 5)


def test_coverage_warns_in_logs_and_sentry_below_the_threshold(
    conn: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[dict] = []
    sentry_sdk.init(dsn="https://key@127.0.0.1/1", before_send=lambda e, h: events.append(e) and None)
    try:
        real = coverage.coverage(conn, [AUDIT])  # the database's clock: the migration made 3 ahead
        assert real[0].status == "ok" and real[0].ahead >= 2
        maintain.ensure_partitions(conn, [AUDIT], today=date(2040, 1, 10))
        with caplog.at_level(logging.WARNING, "skyport.partitions"):
            [low] = coverage.report(conn, tables=[AUDIT], today=date(2040, 3, 5))
            [none] = coverage.report(conn, tables=[AUDIT], today=date(2041, 7, 1))
    finally:
        sentry_sdk.init()  # back to no Sentry
    assert (low.status, low.ahead, low.last_covered) == ("warning", 1, date(2040, 4, 30))
    assert (none.status, none.ahead, none.last_covered) == ("critical", -1, None)
    assert "only 1 month(s) ahead" in caplog.text and "no partition for the current month" in caplog.text
    messages = [e.get("message") or e.get("logentry", {}).get("message", "") for e in events]
    assert any("partition coverage warning: audit_log" in m for m in messages), messages
    assert any("partition coverage critical: audit_log" in m for m in messages), messages


def test_cli_partitions_status(database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["partitions", "status"]) == 0
    out = capsys.readouterr().out
    assert "shipment_tracking_events" in out and "audit_log" in out and " ok " in out
    assert cli.main(["partitions", "status", "--today", "2045-01-01", "--json"]) == 1
    assert '"status": "critical"' in capsys.readouterr().out


def test_a_wrong_registry_entry_is_an_error_naming_it(conn: psycopg.Connection) -> None:
    wrong = PartitionedTable("audit_log", "updated_at")
    missing = PartitionedTable("no_such_table", "at", Interval.DAY)
    results = maintain.ensure_partitions(conn, [wrong, missing, AUDIT], today=date(2026, 12, 1))
    assert [r.outcome for r in results] == ["error", "error", "ok"]
    assert "partitioned on 'created_at', the registry says 'updated_at'" in (results[0].error or "")
    assert "no partitioned table 'no_such_table'" in (results[1].error or "")
