"""`skyport notifications ...`: the family's ops commands.

skyport notifications dead [--limit N] [--json]     dead notifications, newest first
skyport notifications retry ID [ID ...]             dead -> pending, attempts reset (audited)
skyport notifications dispatch                      one dispatch run in this process
"""

from __future__ import annotations

import argparse

from jobs.family import CommandFailed, command_user
from jobs.listing import Column, add_listing_flags, show


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    notes = subparsers.add_parser("notifications", help="notification delivery").add_subparsers(
        title="notifications commands", metavar="CMD"
    )
    cmd = notes.add_parser("dead", help="list dead notifications (attempts used up or permanent errors)")
    add_listing_flags(cmd, limit=50)
    cmd.set_defaults(run=_dead)
    cmd = notes.add_parser("retry", help="send dead notifications again (attempts reset)")
    cmd.add_argument("ids", type=int, nargs="+", help="the dead rows' queue ids")
    cmd.set_defaults(run=_retry)
    notes.add_parser("dispatch", help="deliver due notifications now (one run)").set_defaults(run=_dispatch)


# The columns of `skyport notifications dead`.
DEAD_COLUMNS = (
    Column("ID", "queue_id", right=True),
    Column("TYPE", "notification_type", max_width=24),
    Column("CHANNELS", "send_via", max_width=24),
    Column("DEDUP KEY", "dedup_key", max_width=36),
    Column("TRIES", lambda r: f"{r['attempts']}/{r['max_attempts']}", right=True),
    Column("DIED (UTC)", "updated_at"),
    Column("ERROR", "last_error", max_width=60),
)


def _dead(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.notifications.queue import count_dead, list_dead

    with pool.connection() as conn:
        rows = list_dead(conn, args.limit)
        total = count_dead(conn) if len(rows) == args.limit else None
    show(args, DEAD_COLUMNS, rows, empty="no dead notifications", total=total)
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
    print(stats.summary())
    return 0
