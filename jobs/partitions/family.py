"""The partitions family: range partitions created ahead, old ones retired (docs/families/partitions.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from jobs.family import ConsoleRead, Family, Gauge, Periodic
from jobs.partitions import actors, cli
from jobs.partitions.status import coverage


def _coverage_problems(rows: list[dict[str, Any]]) -> list[str]:
    return [
        f"partitions {row.get('parent')}: {row.get('status')}: {row.get('message')}"
        for row in rows
        if row.get("status") not in (None, "ok")
    ]


def _metrics(conn: psycopg.Connection) -> Iterator[Gauge]:
    yield Gauge(
        "skyport_partitions_intervals_ahead",
        "Whole partition intervals created beyond the current one",
        {table.parent: table.ahead for table in coverage(conn)},
        label="table",
    )


FAMILY = Family(
    name="partitions",
    actors=(actors,),
    commands=cli.add_commands,
    reads=(ConsoleRead("partition_coverage", coverage, _coverage_problems),),
    metrics=_metrics,
    schedule=(Periodic("ensure_partitions", "ensure_partitions", "every 1h", grace_s=1800),),
    startup=(actors.ensure_at_startup,),
)
