"""`skyport partitions status | ensure`."""

from __future__ import annotations

import argparse
from datetime import date
from typing import TYPE_CHECKING

from jobs.family import CommandFailed
from jobs.listing import Column, add_listing_flags, human, show
from jobs.maintenance_file import MaintenanceConfigError

if TYPE_CHECKING:
    from jobs.partitions.maintain import TableResult


def add_commands(subparsers) -> None:
    parts = subparsers.add_parser(
        "partitions", help="partitioned tables: coverage and maintenance"
    ).add_subparsers(title="partitions commands", metavar="CMD")
    cmd = parts.add_parser(
        "status", help="per table: last covered date and intervals ahead (exit 1 if not ok)"
    )
    cmd.add_argument("--today", type=date.fromisoformat, help="pretend today is this date (YYYY-MM-DD)")
    add_listing_flags(cmd)
    cmd.set_defaults(run=_status)
    cmd = parts.add_parser("ensure", help="create partitions ahead and apply retention now")
    cmd.add_argument("--today", type=date.fromisoformat, help="pretend today is this date (YYYY-MM-DD)")
    cmd.set_defaults(run=_ensure)


def _status(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.partitions.status import coverage

    try:
        with pool.connection() as conn:
            items = coverage(conn, today=args.today)
    except MaintenanceConfigError as exc:
        raise CommandFailed(str(exc)) from None
    show(args, STATUS_COLUMNS, [item.as_dict() for item in items], empty="no partitioned tables")
    return 0 if all(item.status == "ok" for item in items) else 1


# The columns of `skyport partitions status`.
STATUS_COLUMNS = (
    Column("TABLE", "parent"),
    Column("INTERVAL", "interval"),
    Column("LAST COVERED", "last_covered"),
    Column("AHEAD", "ahead", right=True),
    Column("STATUS", "status"),
    Column("MESSAGE", "message", max_width=60),
)


def _ensure(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.partitions import maintain

    try:
        with pool.connection() as conn:
            results = maintain.ensure_partitions(conn, today=args.today)
            results += maintain.apply_retention(conn, today=args.today)
    except MaintenanceConfigError as exc:
        raise CommandFailed(str(exc)) from None
    for line in per_table(results):
        print(line)
    return 0 if all(r.outcome == "ok" for r in results) else 1


def per_table(results: list[TableResult]) -> list[str]:
    """One line per table for what its ensuring and its retention did together (a table has a
    result of each): the outcome, the first that was not ok, and the partitions by name."""
    tables: dict[str, list[TableResult]] = {}
    for r in results:
        tables.setdefault(r.parent, []).append(r)
    lines = []
    for parent, rs in tables.items():
        outcome = next((r.outcome for r in rs if r.outcome != "ok"), "ok")
        done = "; ".join(
            f"{what} {human([p for r in rs for p in getattr(r, what)])}"
            for what in ("created", "dropped", "detached")
        )
        errors = "".join(f"; {r.error}" for r in rs if r.error)
        lines.append(f"{parent}: {outcome}; {done}{errors}")
    return lines
