"""`skyport schedule list | run NAME | enable NAME | disable NAME`: the periodic jobs."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from skyport.errors import CommandError
from skyport.output import Column, add_listing_flags, show


def add_commands(sub: argparse._SubParsersAction) -> None:
    sched = sub.add_parser("schedule", help="the periodic jobs").add_subparsers(
        title="schedule commands", metavar="CMD"
    )
    cmd = sched.add_parser("list", help="every entry with its trigger, next tick and last run")
    add_listing_flags(cmd)
    cmd.set_defaults(run=_list)
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


# The columns of `skyport schedule list`.
SCHEDULE_COLUMNS = (
    Column("NAME", "name"),
    Column("TRIGGER", "trigger"),
    Column("ON", "enabled"),
    Column("NEXT (UTC)", "next_fire"),
    Column("LAST RUN (UTC)", "last_run"),
    Column("BY", "last_by", max_width=24),
    Column("LAST OUTCOME", "last_outcome", max_width=60),
)


def _list(args: argparse.Namespace) -> int:
    from db import pool
    from scheduler import schedule, state

    entries = schedule.load_schedule()
    now = datetime.now(UTC)
    with pool.connection() as conn:
        last = state.last_runs(conn, [j.name for j in entries])
        switched = state.overrides(conn)
    rows = []
    for job in entries:
        on = job.enabled and switched.get(job.name, True)
        nxt = job.build_trigger().get_next_fire_time(None, now) if on else None
        run = last.get(job.name) or {}
        outcome = run.get("state")
        if run.get("last_error"):
            outcome = f"{outcome}: {run['last_error']}"
        rows.append(
            {
                "name": job.name,
                "trigger": job.trigger + ("" if job.timezone == "UTC" else f" {job.timezone}"),
                "enabled": on,
                "next_fire": nxt and nxt.astimezone(UTC),
                "last_run": run.get("fire_time") and run["fire_time"].astimezone(UTC),
                "last_by": _last_by(run),
                "last_job_id": run.get("id"),
                "last_outcome": outcome,
            }
        )
    show(args, SCHEDULE_COLUMNS, rows, empty="no schedule entries")
    return 0


def _last_by(run: dict[str, Any]) -> str | None:
    if not run:
        return None
    return f"run now: {run['enqueued_by']}" if run.get("manual") else "schedule"


def _run(args: argparse.Namespace) -> int:
    """Through the console's own action: the same run, audited as `cli:<login>`."""
    from dashboard import actions
    from db import pool

    _entry(args.name)
    with pool.connection() as conn:
        result = actions.run_entry_now(conn, actions.Actor.command_line(), args.name)
    print(f"{args.name}: job {result.changed[0]}")
    return 0


def _switch(args: argparse.Namespace, enabled: bool) -> int:
    """Through the console's own action: the same switch, audited as `cli:<login>`."""
    from dashboard import actions
    from db import pool

    _entry(args.name)
    with pool.connection() as conn:
        print(actions.set_entry_enabled(conn, actions.Actor.command_line(), args.name, enabled).message)
    return 0


def _enable(args: argparse.Namespace) -> int:
    return _switch(args, True)


def _disable(args: argparse.Namespace) -> int:
    return _switch(args, False)
