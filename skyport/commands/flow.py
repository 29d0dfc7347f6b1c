"""`skyport queues ...` and `skyport actors ...`: flow control from the command line (pause and
resume for the whole fleet, run-time concurrency limits, and the table of both)."""

from __future__ import annotations

import argparse
from typing import Any

from jobs.family import command_user
from skyport.errors import CommandError
from skyport.output import Column, add_listing_flags, show, when


def add_commands(sub: argparse._SubParsersAction) -> None:
    for scope, plural in (("queue", "queues"), ("actor", "actors")):
        group = sub.add_parser(
            plural, help=f"{plural}: waiting, running, limits; pause and resume"
        ).add_subparsers(title=f"{plural} commands", metavar="CMD")
        cmd = group.add_parser(
            "list",
            help=f"every {scope}: waiting, running, held (paused/slot/rate), limit, "
            + ("rate, " if scope == "actor" else "")
            + "paused",
        )
        add_listing_flags(cmd)
        cmd.set_defaults(run=_list, scope=scope)
        cmd = group.add_parser("pause", help=f"no worker starts jobs of the {scope} until resumed")
        cmd.add_argument("name", help=f"the {scope}'s name")
        cmd.add_argument("--reason", help="why (shown with the pause)")
        cmd.set_defaults(run=_pause, scope=scope)
        cmd = group.add_parser("resume", help=f"jobs of the {scope} start again")
        cmd.add_argument("name", help=f"the {scope}'s name")
        cmd.set_defaults(run=_resume, scope=scope)
        cmd = group.add_parser("limit", help=f"at most N jobs of the {scope} running at once, fleet-wide")
        cmd.add_argument("name", help=f"the {scope}'s name")
        how = cmd.add_mutually_exclusive_group(required=True)
        how.add_argument("--concurrency", type=int, help="the most running at once (1 or more)")
        how.add_argument("--none", action="store_true", help="remove the run-time limit")
        cmd.set_defaults(run=_limit, scope=scope)


def _change(args: argparse.Namespace, verb: str, body: dict[str, Any]) -> int:
    """Through the console's own action (dashboard/flow.py): the same checks, the same audit row."""
    from dashboard import flow as console_flow
    from db import pool
    from workers import flow

    try:
        with pool.connection() as conn:
            result = console_flow.change(conn, command_user(), None, args.scope, args.name, verb, body)
    except flow.FlowError as exc:
        raise CommandError(str(exc)) from None
    print(result.message)
    return 0


def _pause(args: argparse.Namespace) -> int:
    return _change(args, "pause", {"reason": args.reason})


def _resume(args: argparse.Namespace) -> int:
    return _change(args, "resume", {})


def _limit(args: argparse.Namespace) -> int:
    return _change(args, "limit", {"none": True} if args.none else {"concurrency": args.concurrency})


def _held(row: dict[str, Any]) -> str:
    return f"{row['waiting_paused']}/{row['waiting_slot']}/{row['waiting_rate']}"


def _limit_text(row: dict[str, Any]) -> str | None:
    if not row["limit"]:
        return None
    return f"{row['limit']} per key" if row.get("limit_key") else str(row["limit"])


def _paused_text(row: dict[str, Any]) -> str | None:
    if not row["paused"]:
        return None
    reason = f": {row['paused_reason']}" if row["paused_reason"] else ""
    return f"since {when(row['paused_at'])} by {row['paused_by']}{reason}"


def _columns(scope: str) -> tuple[Column, ...]:
    """The columns of `skyport queues list` and `skyport actors list`."""
    first = (
        (Column("ACTOR", "actor"), Column("QUEUE", "queue"))
        if scope == "actor"
        else (Column("QUEUE", "queue"),)
    )
    return (
        *first,
        Column("WAITING", "waiting", right=True),
        Column("RUNNING", "running", right=True),
        Column("HELD P/S/R", _held, right=True),
        Column("LIMIT", _limit_text, right=True),
        *((Column("RATE", "rate"),) if scope == "actor" else ()),
        Column("PAUSED", _paused_text, max_width=80),
    )


def _list(args: argparse.Namespace) -> int:
    from db import pool
    from workers import flow
    from workers.broker import broker

    with pool.connection() as conn:
        rows = flow.flow_table(conn, dict(broker.actors))[f"{args.scope}s"]
    show(args, _columns(args.scope), rows, empty=f"no {args.scope}s")
    return 0
