"""`skyport matviews status | refresh VIEW [--now]`."""

from __future__ import annotations

import argparse
import json

from jobs.family import CommandFailed
from jobs.maintenance_file import MaintenanceConfigError


def add_commands(subparsers) -> None:
    views = subparsers.add_parser("matviews", help="materialized views: staleness and refreshes")
    sub = views.add_subparsers(title="matviews commands", metavar="CMD")
    cmd = sub.add_parser("status", help="per view: last successful refresh, staleness, last outcome")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
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
    if args.json:
        print(json.dumps([item.as_dict() for item in items], indent=2))
        return 0
    print(f"{'VIEW':<28} {'LAST SUCCESS (UTC)':<19}  {'STALENESS':>10}  {'STALE':<5}  LAST OUTCOME")
    for item in items:
        when = item.last_success_at.strftime("%Y-%m-%d %H:%M:%S") if item.last_success_at else "never"
        age = f"{item.staleness_s:.0f}s" if item.staleness_s is not None else "-"
        print(
            f"{item.view:<28} {when:<19}  {age:>10}  {'yes' if item.stale else 'no':<5}  "
            f"{item.last_outcome or '-'}{': ' + item.last_error if item.last_error else ''}"
        )
    return 0


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
