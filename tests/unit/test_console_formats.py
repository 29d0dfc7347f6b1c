"""The console's formatting of values for people and the charts' axes (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dashboard import chart, domain_views, formats

NOW = datetime(2026, 12, 6, 23, 40, tzinfo=UTC)


def test_times_relative_with_the_absolute_time_and_zone_on_hover() -> None:
    html = str(formats.ago(NOW - timedelta(minutes=3), now=NOW))
    assert ">3 min ago</time>" in html and 'title="2026-12-06 23:37:00 UTC"' in html
    assert ">in 2 h</time>" in str(formats.ago(NOW + timedelta(hours=2, seconds=1), now=NOW))
    assert ">just now<" in str(formats.ago(NOW, now=NOW))
    naive = datetime(2026, 12, 6, 23, 30)  # a seed column without a zone holds UTC
    assert ">10 min ago<" in str(formats.ago(naive, now=NOW))
    assert formats.when(NOW) == "2026-12-06 23:40:00 UTC"
    assert formats.ago(None) == ""


def test_durations_tags_keys_and_plain_values() -> None:
    assert [formats.duration(v) for v in (0.85, 1.2, 180, 9000, None)] == [
        "850 ms",
        "1.2 s",
        "3.0 min",
        "2.5 h",
        "",
    ]
    assert formats.duration(12.4, "ms") == "12 ms"
    assert formats.duration(timedelta(seconds=90)) == "1.5 min"
    assert str(formats.tags(["in_app", "<sms>"])) == (
        '<span class="tag">in_app</span> <span class="tag">&lt;sms&gt;</span>'
    )
    key = str(formats.long_key("invoice-reminder:customer-000042:2026-12-06", 10))
    assert ">invoice-r…</span>" in key and 'data-copy="invoice-reminder:customer-000042:2026-12-06"' in key
    assert [formats.plain(v) for v in (None, True, ["a", "b"], 3)] == ["", "yes", "a, b", "3"]


def test_statuses_are_coloured_by_what_they_mean() -> None:
    coverage = domain_views.VIEWS["partition_coverage"].columns[1]
    assert 'badge-good">ok<' in str(domain_views.cell({"status": "ok"}, coverage))
    assert 'badge-bad">critical<' in str(domain_views.cell({"status": "critical"}, coverage))
    stale = domain_views.VIEWS["matview_staleness"].columns[1]
    assert 'badge-warn">stale<' in str(domain_views.cell({"stale": True, "last_success_at": NOW}, stale))
    assert 'badge-good">fresh<' in str(domain_views.cell({"stale": False, "last_success_at": NOW}, stale))
    assert "never refreshed" in str(domain_views.cell({"stale": True, "last_success_at": None}, stale))


def test_axes_have_round_ticks_and_time_labels() -> None:
    assert chart.nice_steps(7) == [0, 2, 4, 6, 8]
    assert chart.nice_steps(0.3)[-1] >= 0.3
    ticks, pattern = chart.time_ticks(NOW - timedelta(hours=1), NOW)
    assert pattern == "%H:%M" and len(ticks) <= chart.MAX_TIME_TICKS and ticks[0].minute % 10 == 0
    ticks, pattern = chart.time_ticks(NOW - timedelta(days=7), NOW)
    assert pattern == "%a %d %b" and all(t.hour == 0 for t in ticks)
    svg = str(
        chart.stacked_bars(
            NOW - timedelta(minutes=3), timedelta(minutes=1), [(1, 0), (2, 1), (0, 0)], "t", "n"
        )
    )
    assert "time (UTC)" in svg and 'class="x-axis"' in svg and 'class="y-axis"' in svg
    assert "2 succeeded, 1 failed" in svg
