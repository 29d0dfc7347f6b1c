"""`skyport matviews status | refresh VIEW [--now]`."""

from __future__ import annotations

import argparse

from jobs.family import CommandFailed
from jobs.listing import Column, add_listing_flags, duration, show
from jobs.maintenance_file import MaintenanceConfigError


def add_commands(subparsers) -> None:
    views = subparsers.add_parser("matviews", help="materialized views: staleness and refreshes")
    sub = views.add_subparsers(title="matviews commands", metavar="CMD")
    cmd = sub.add_parser("status", help="per view: last successful refresh, staleness, last outcome")
    add_listing_flags(cmd)
    cmd.set_defaults(run=_status)
    cmd = sub.add_parser("refresh", help="request a refresh (debounced job), or run it here with --now")
    cmd.add_argument("view", help="the view's name (see `skyport matviews status`)")
    cmd.add_argument("--now", action="store_true", help="refresh in this process and wait for it")
    cmd.set_defaults(run=_refresh)


def _status(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.matviews.status import staleness

    try:
        with pool.connection() as conn:
            items = staleness(conn)
    except MaintenanceConfigError as exc:
        raise CommandFailed(str(exc)) from None
    rows = [item.as_dict() | {"last_success": item.last_success_at} for item in items]
    show(
        args, STATUS_COLUMNS, rows if not args.json else [item.as_dict() for item in items], empty="no views"
    )
    return 0


# The columns of `skyport matviews status`.
STATUS_COLUMNS = (
    Column("VIEW", "view"),
    Column("LAST SUCCESS (UTC)", lambda r: r["last_success"] or "never"),
    Column("STALENESS", lambda r: duration(r["staleness_s"]), right=True),
    Column("STALE", "stale"),
    Column(
        "LAST OUTCOME",
        lambda r: (r["last_outcome"] or "-") + (f": {r['last_error']}" if r["last_error"] else ""),
        max_width=60,
    ),
)


def _refresh(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.matviews.refresh import UnknownView, refresh_view

    try:
        if args.now:
            with pool.connection() as conn:
                result = refresh_view(conn, args.view)
            print(f"{result.view}: {result.outcome} ({result.mode or '-'}, {result.rows} rows)")
            return 0 if result.outcome == "succeeded" else 1
        from jobs.matviews.actors import request_refresh

        ref = request_refresh(args.view)
        print(f"job {ref.id} ({ref.state}{', new' if ref.created else ', already requested'})")
        return 0
    except (UnknownView, MaintenanceConfigError) as exc:
        raise CommandFailed(str(exc)) from None
