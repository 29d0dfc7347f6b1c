"""`skyport queues ...` and `skyport actors ...`: flow control from the command line (pause and
resume for the whole fleet, run-time concurrency limits, and the table of both)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobs.family import command_user
from skyport.errors import CommandError
from skyport.output import json_default, when


def add_commands(sub: argparse._SubParsersAction) -> None:
    for scope, plural in (("queue", "queues"), ("actor", "actors")):
        group = sub.add_parser(
            plural, help=f"{plural}: waiting, running, limits; pause and resume"
        ).add_subparsers(title=f"{plural} commands", metavar="CMD")
        cmd = group.add_parser("list", help=f"every {scope}: waiting, running, limit, rate, paused")
        cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
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


def _known(scope: str) -> set[str]:
    from workers.broker import broker

    if scope == "actor":
        return set(broker.actors)
    return {actor.queue_name for actor in broker.actors.values()}


def _act(scope: str, change: Any) -> Any:
    from db import pool
    from workers import flow

    try:
        with pool.connection() as conn:
            return change(conn, _known(scope))
    except flow.FlowError as exc:
        raise CommandError(str(exc)) from None


def _pause(args: argparse.Namespace) -> int:
    from workers import flow

    _act(
        args.scope,
        lambda conn, known: flow.pause(conn, args.scope, args.name, command_user(), args.reason, known),
    )
    print(f"{args.scope} {args.name}: paused (jobs wait; running ones finish)")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from workers import flow

    released = _act(
        args.scope, lambda conn, known: flow.resume(conn, args.scope, args.name, command_user(), known)
    )
    if released < 0:
        print(f"{args.scope} {args.name}: was not paused")
    else:
        print(f"{args.scope} {args.name}: resumed ({released} held jobs go out)")
    return 0


def _limit(args: argparse.Namespace) -> int:
    from workers import flow

    limit = None if args.none else args.concurrency
    _act(
        args.scope,
        lambda conn, known: flow.set_limit(conn, args.scope, args.name, limit, command_user(), known),
    )
    print(f"{args.scope} {args.name}: " + (f"at most {limit} running" if limit else "no run-time limit"))
    return 0


def _list(args: argparse.Namespace) -> int:
    from db import pool
    from workers import flow
    from workers.broker import broker

    with pool.connection() as conn:
        rows = flow.flow_table(conn, dict(broker.actors))[f"{args.scope}s"]
    if args.json:
        print(json.dumps(rows, default=json_default, indent=2))
        return 0
    first = "ACTOR" if args.scope == "actor" else "QUEUE"
    width = max([len(first), *(len(r[args.scope]) for r in rows)])
    print(
        f"{first:<{width}} {'WAITING':>8} {'RUNNING':>8} {'LIMIT':>7} {'RATE':>9}  "
        "HELD (paused/slot/rate)  PAUSED"
    )
    for r in rows:
        limit = str(r["limit"] or "-") + ("/key" if r.get("limit_key") and r["limit"] else "")
        held = f"{r['waiting_paused']}/{r['waiting_slot']}/{r['waiting_rate']}"
        paused = "-"
        if r["paused"]:
            paused = f"since {when(r['paused_at'])} by {r['paused_by']}" + (
                f": {r['paused_reason']}" if r["paused_reason"] else ""
            )
        print(
            f"{r[args.scope]:<{width}} {r['waiting']:>8} {r['running']:>8} {limit:>7} "
            f"{r.get('rate') or '-':>9}  {held:<23}  {paused}"
        )
    return 0
