"""The partition and view registries: defaults, configuration, validation naming the entry."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from jobs.maintenance_file import MaintenanceConfigError
from jobs.matviews.registry import load_views
from jobs.partitions.registry import Interval, add_intervals, interval_start, load_tables, partition_name


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "maintenance.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    tracking, audit = load_tables(path="")
    assert (tracking.parent, tracking.key, tracking.interval, tracking.premake, tracking.retention) == (
        "shipment_tracking_events",
        "event_timestamp",
        Interval.MONTH,
        3,
        24,
    )
    assert (audit.parent, audit.retention, audit.archive) == ("audit_log", None, False)
    assert {v.name: v.interval_s for v in load_views(path="")} == {
        "active_countries": 300,
        "shipment_statistics": 900,
    }


def test_interval_arithmetic_and_names_across_year_ends_and_leap_days() -> None:
    assert add_intervals(Interval.MONTH, date(2026, 12, 1), 1) == date(2027, 1, 1)
    assert add_intervals(Interval.MONTH, date(2027, 1, 1), -24) == date(2025, 1, 1)
    assert add_intervals(Interval.DAY, date(2028, 2, 28), 1) == date(2028, 2, 29)
    assert add_intervals(Interval.DAY, date(2027, 2, 28), 1) == date(2027, 3, 1)
    assert interval_start(Interval.YEAR, date(2028, 2, 29)) == date(2028, 1, 1)
    assert partition_name("t", Interval.DAY, date(2028, 2, 29)) == "t_2028_02_29"
    assert partition_name("t", Interval.MONTH, date(2028, 2, 1)) == "t_2028_02"
    assert partition_name("t", Interval.YEAR, date(2028, 1, 1)) == "t_2028"


def test_configuration_changes_and_adds_entries(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[partitions.audit_log]\nretention = 12\narchive = true\n"
        '[partitions.shipments]\nkey = "created_at"\ninterval = "year"\npremake = 1\n'
        '[partitions.shipment_tracking_events]\nretention = "none"\n'
        "[matviews.shipment_statistics]\ninterval_s = 600\nstatement_timeout_s = 30\n"
        "[matviews.daily_revenue]\ninterval_s = 3600\n",
    )
    tables = {t.parent: t for t in load_tables(path=path)}
    assert (tables["audit_log"].retention, tables["audit_log"].archive) == (12, True)
    assert tables["shipment_tracking_events"].retention is None
    assert (tables["shipments"].interval, tables["shipments"].premake) == (Interval.YEAR, 1)
    views = {v.name: v for v in load_views(path=path)}
    assert (views["shipment_statistics"].interval_s, views["shipment_statistics"].statement_timeout_s) == (
        600,
        30,
    )
    assert views["daily_revenue"].interval_s == 3600


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('[partitions.audit_log]\ninterval = "week"\n', "partitions entry 'audit_log'"),
        ("[partitions.audit_log]\npremake = 0\n", "premake must be at least 1"),
        ("[partitions.audit_log]\nretention = -3\n", "retention must be a whole number"),
        ("[partitions.audit_log]\nkeep = 3\n", "unknown keys ['keep']"),
        ('[partitions.shipments]\ninterval = "year"\n', "a new table needs its partition `key`"),
        ('[partitions."Bad Name"]\nkey = "x"\n', "not a plain lower-case identifier"),
        ("[matviews.daily_revenue]\nstatement_timeout_s = 5\n", "a new view needs interval_s"),
        ("[matviews.active_countries]\ninterval_s = 0\n", "matviews entry 'active_countries'"),
        ("[other]\nx = 1\n", "unknown sections"),
        ("[partitions.audit_log\n", "is not valid TOML"),
    ],
)
def test_bad_configuration_is_refused_naming_the_entry(tmp_path: Path, text: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(MaintenanceConfigError, match=None) as info:
        load_tables(path=path)
        load_views(path=path)
    assert fragment in str(info.value)
