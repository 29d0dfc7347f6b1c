"""`skyport notifications ...` and `skyport quotes expire`: ops commands of these families.

skyport notifications dead [--limit N] [--json]    dead notifications, newest first
skyport notifications retry ID [ID ...]             dead -> pending, attempts reset (audited)
skyport notifications dispatch                      one dispatch run in this process
skyport quotes expire                               one expiry run in this process
"""

from __future__ import annotations

import argparse
import json
import os


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    notes = subparsers.add_parser("notifications", help="notification delivery").add_subparsers(
        title="notifications commands", metavar="CMD"
    )
    cmd = notes.add_parser("dead", help="list dead notifications (attempts used up or permanent errors)")
    cmd.add_argument("--limit", type=int, default=50)
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(run=_dead)
    cmd = notes.add_parser("retry", help="send dead notifications again (attempts reset)")
    cmd.add_argument("ids", type=int, nargs="+")
    cmd.set_defaults(run=_retry)
    notes.add_parser("dispatch", help="deliver due notifications now (one run)").set_defaults(run=_dispatch)

    quotes = subparsers.add_parser("quotes", help="quotes").add_subparsers(
        title="quotes commands", metavar="CMD"
    )
    quotes.add_parser("expire", help="expire quoted quotes past valid_until now (one run)").set_defaults(
        run=_expire
    )


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
    from workers.cli import CommandError

    with pool.connection() as conn:
        retried = retry_dead(conn, args.ids, performed_by=f"cli:{os.environ.get('USER', '?')}")
    skipped = sorted(set(args.ids) - set(retried))
    if retried:
        print(f"pending again: {' '.join(map(str, retried))}")
    if skipped:
        raise CommandError(f"not dead (left alone): {' '.join(map(str, skipped))}")
    return 0


def _dispatch(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.notifications.dispatch import dispatch_configured

    with pool.connection() as conn:
        stats = dispatch_configured(conn)
    print(stats)
    return 0


def _expire(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.quotes.expiry import expire_configured

    with pool.connection() as conn:
        stats = expire_configured(conn)
    print(stats)
    return 0
