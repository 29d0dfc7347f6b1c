"""`skyport schedule list | run NAME | enable NAME | disable NAME`: the periodic jobs."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from jobs.family import command_user
from skyport.errors import CommandError
from skyport.output import when


def add_commands(sub: argparse._SubParsersAction) -> None:
    sched = sub.add_parser("schedule", help="the periodic jobs").add_subparsers(
        title="schedule commands", metavar="CMD"
    )
    sched.add_parser("list", help="every entry with its trigger, next and last tick").set_defaults(run=_list)
    for name, run, text in (
        ("run", _run, "enqueue one run of an entry now"),
        ("enable", _enable, "switch an entry on (persisted)"),
        ("disable", _disable, "switch an entry off (persisted)"),
    ):
        cmd = sched.add_parser(name, help=text)
        cmd.add_argument("name", help="the entry's name (see `skyport schedule list`)")
        cmd.set_defaults(run=run)


def _entry(name: str) -> Any:
    from scheduler import schedule

    entries = {job.name: job for job in schedule.load_schedule()}
    if name not in entries:
        raise CommandError(f"no schedule entry {name!r} (entries: {', '.join(sorted(entries))})")
    return entries[name]


def _list(args: argparse.Namespace) -> int:
    from db import pool
    from scheduler import schedule, state

    entries = schedule.load_schedule()
    now = datetime.now(UTC)
    with pool.connection() as conn:
        last = state.last_ticks(conn, [j.name for j in entries])
        switched = state.overrides(conn)
    print(f"{'NAME':<24} {'TRIGGER':<20} {'ON':<4} {'NEXT (UTC)':<19}  {'LAST (UTC)':<19}  LAST OUTCOME")
    for job in entries:
        on = job.enabled and switched.get(job.name, True)
        nxt = job.build_trigger().get_next_fire_time(None, now) if on else None
        tick = last.get(job.name) or {}
        outcome = tick.get("state", "-")
        if tick.get("last_error"):
            outcome += f": {tick['last_error'][:50]}"
        trigger = job.trigger + ("" if job.timezone == "UTC" else f" {job.timezone}")
        print(
            f"{job.name:<24} {trigger:<20} {'yes' if on else 'no':<4} {when(nxt and nxt.astimezone(UTC))}  "
            f"{when(tick.get('fire_time'))}  {outcome}"
        )
    return 0


def _run(args: argparse.Namespace) -> int:
    from scheduler import runner

    ref = runner.run_now(_entry(args.name), by=command_user())
    print(f"{args.name}: job {ref.id}")
    return 0


def _switch(args: argparse.Namespace, enabled: bool) -> int:
    from db import pool
    from scheduler import state

    _entry(args.name)
    with pool.connection() as conn:
        state.set_enabled(conn, args.name, enabled, by=command_user())
    print(f"{args.name}: {'enabled' if enabled else 'disabled'}")
    return 0


def _enable(args: argparse.Namespace) -> int:
    return _switch(args, True)


def _disable(args: argparse.Namespace) -> int:
    return _switch(args, False)
