"""The materialized-views family: report views refreshed on schedule and on demand
(docs/families/matviews.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from jobs.family import ConsoleRead, Family, Gauge, Periodic
from jobs.matviews import actors, cli
from jobs.matviews.status import staleness


def _stale_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        if not row.get("stale"):
            continue
        age = row.get("staleness_s")
        since = f" ({age / 60:.0f} min since its last refresh)" if age is not None else " (never refreshed)"
        lines.append(f"materialized view {row.get('view')} is stale{since}")
    return lines


def refresh_by_ops(conn: psycopg.Connection, by: str, ip: str | None, view: str) -> int:
    """Ask for a refresh of a view now (a debounced job); returns its job id."""
    return actors.request_refresh(view, conn=conn).id


def _metrics(conn: psycopg.Connection) -> Iterator[Gauge]:
    yield Gauge(
        "skyport_matview_staleness_seconds",
        "Seconds since the view's last successful refresh (-1: never)",
        {v.view: v.staleness_s if v.staleness_s is not None else -1 for v in staleness(conn)},
        label="view",
    )


FAMILY = Family(
    name="matviews",
    actors=(actors,),
    commands=cli.add_commands,
    reads=(ConsoleRead("matview_staleness", staleness, _stale_lines),),
    metrics=_metrics,
    actions={"refresh_view": refresh_by_ops},
    schedule=(
        Periodic("refresh_active_countries", "refresh_matview", "every 5m", args=("active_countries",)),
        Periodic(
            "refresh_shipment_statistics", "refresh_matview", "every 15m", args=("shipment_statistics",)
        ),
    ),
)
