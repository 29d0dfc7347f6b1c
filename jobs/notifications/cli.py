"""`skyport notifications ...`: the family's ops commands.

skyport notifications dead [--limit N] [--json]    dead notifications, newest first
skyport notifications retry ID [ID ...]             dead -> pending, attempts reset (audited)
skyport notifications dispatch                      one dispatch run in this process
"""

from __future__ import annotations

import argparse
import json

from jobs.family import CommandFailed, command_user


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    notes = subparsers.add_parser("notifications", help="notification delivery").add_subparsers(
        title="notifications commands", metavar="CMD"
    )
    cmd = notes.add_parser("dead", help="list dead notifications (attempts used up or permanent errors)")
    cmd.add_argument("--limit", type=int, default=50, help="at most this many rows (default: %(default)s)")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.set_defaults(run=_dead)
    cmd = notes.add_parser("retry", help="send dead notifications again (attempts reset)")
    cmd.add_argument("ids", type=int, nargs="+", help="the dead rows' queue ids")
    cmd.set_defaults(run=_retry)
    notes.add_parser("dispatch", help="deliver due notifications now (one run)").set_defaults(run=_dispatch)


def _dead(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.notifications.queue import list_dead

    with pool.connection() as conn:
        rows = list_dead(conn, args.limit)
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    for r in rows:
        print(
            f"{r['queue_id']:>10}  {r['notification_type']:<20} {r['dedup_key']:<40} "
            f"{r['attempts']}/{r['max_attempts']}  {r['last_error']}"
        )
    if not rows:
        print("no dead notifications")
    return 0


def _retry(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.notifications.queue import retry_dead

    with pool.connection() as conn:
        retried = retry_dead(conn, args.ids, performed_by=command_user())
    skipped = sorted(set(args.ids) - set(retried))
    if retried:
        print(f"pending again: {' '.join(map(str, retried))}")
    if skipped:
        raise CommandFailed(f"not dead (left alone): {' '.join(map(str, skipped))}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.notifications.dispatch import dispatch_configured

    with pool.connection() as conn:
        stats = dispatch_configured(conn)
    print(stats)
    return 0
