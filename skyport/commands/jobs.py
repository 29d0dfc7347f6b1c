"""`skyport enqueue | jobs ... | ping | maintenance`: the ledger's jobs from the command line."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import psycopg

import config
from jobs.family import command_user
from skyport.errors import CommandError
from skyport.output import Column, add_listing_flags, dumps, human, json_default, show, when


def add_commands(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("enqueue", help="enqueue a job")
    cmd.add_argument("actor", help="the actor's name")
    cmd.add_argument("--args", type=_json_arg(list), default=[], help="JSON list of positional arguments")
    cmd.add_argument("--kwargs", type=_json_arg(dict), default={}, help="JSON object of keyword arguments")
    cmd.add_argument("--dedup-key", help="at most one unfinished job per key: an existing one is returned")
    cmd.add_argument(
        "--dedup-window", type=float, help="seconds the key stays blocked after the job finished"
    )
    cmd.add_argument("--delay", type=float, help="seconds to wait before the job may run")
    cmd.add_argument("--queue", help="the queue (default: the actor's)")
    cmd.add_argument("--priority", type=int, help="0 (first) to 9 (last); default: the actor's, else 0")
    cmd.set_defaults(run=_enqueue)

    jobs = sub.add_parser("jobs", help="inspect and act on jobs").add_subparsers(
        title="jobs commands", metavar="CMD"
    )
    cmd = jobs.add_parser("list", help="list jobs, newest first")
    cmd.add_argument("--state", help="only jobs in this state (queued, running, dead, ...)")
    cmd.add_argument("--actor", help="only jobs of this actor")
    add_listing_flags(cmd, limit=DEFAULT_LIST_LIMIT, before=True)
    cmd.set_defaults(run=_list)
    for name, run, text in (
        ("show", _show, "show a job with every attempt"),
        ("retry", _retry, "retry a dead or cancelled job"),
        ("cancel", _cancel, "cancel a job that has not finished"),
    ):
        cmd = jobs.add_parser(name, help=text)
        cmd.add_argument("id", type=int, help="the job's id")
        if run is _show:
            cmd.add_argument("--json", action="store_true", help="print JSON instead of text")
        cmd.set_defaults(run=run)
    jobs.add_parser("prune", help="delete finished jobs past their retention").set_defaults(run=_prune)

    cmd = sub.add_parser("ping", help="enqueue the ping actor and wait for it: the pipeline's smoke test")
    cmd.add_argument("--timeout", type=float, default=30.0, help="seconds to wait (default: %(default)s)")
    cmd.set_defaults(run=_ping)
    sub.add_parser(
        "maintenance", help="recover jobs of dead workers, republish lost messages (once)"
    ).set_defaults(run=_maintenance)


def _json_arg(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
        if not isinstance(value, kind):
            raise argparse.ArgumentTypeError(f"must be a JSON {'list' if kind is list else 'object'}")
        return value

    return parse


def _enqueue(args: argparse.Namespace) -> int:
    from workers import EnqueueError, enqueue

    try:
        ref = enqueue(
            args.actor,
            args.args,
            args.kwargs,
            dedup_key=args.dedup_key,
            dedup_window=args.dedup_window,
            delay=args.delay,
            queue=args.queue,
            priority=args.priority,
            enqueued_by=command_user(),
        )
    except EnqueueError as exc:
        raise CommandError(str(exc)) from None
    if ref.created:
        print(ref.id)
    else:
        print(f"{ref.id} (the existing job for dedup key {args.dedup_key}, {ref.state})")
    return 0


# Rows `skyport jobs list` shows unless --limit says otherwise.
DEFAULT_LIST_LIMIT = 50
# The columns of `skyport jobs list`.
JOB_COLUMNS = (
    Column("ID", "id", right=True),
    Column("STATE", "state"),
    Column("ACTOR", "actor", max_width=32),
    Column("QUEUE", "queue", max_width=16),
    Column("TRIES", lambda r: f"{r['attempts']}/{r['max_attempts']}", right=True),
    Column("ENQUEUED (UTC)", "enqueued_at"),
    Column("ERROR", "last_error", max_width=60),
)


def _list(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        try:
            rows = ledger.list_jobs(
                conn, state=args.state, actor=args.actor, limit=args.limit, before_id=args.before
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        total = None
        if len(rows) == args.limit:
            total = ledger.count_jobs(conn, state=args.state, actor=args.actor)
    next_before = rows[-1]["id"] if rows and len(rows) == args.limit else None
    show(args, JOB_COLUMNS, rows, empty="no jobs", total=total, next_before=next_before)
    return 0


# `skyport jobs show`: (label, the job's field or a function of the job).
JOB_FIELDS: tuple[tuple[str, Any], ...] = (
    ("job", "id"),
    ("actor", "actor"),
    ("queue", "queue"),
    ("state", "state"),
    ("priority", "priority"),
    ("waiting for", lambda j: j["waiting_for"] if j["state"] == "queued" else None),  # flow control
    ("attempts", lambda j: f"{j['attempts']} of {j['max_attempts']}"),
    ("args", lambda j: _arguments(j["args"])),
    ("kwargs", lambda j: _arguments(j["kwargs"])),
    ("dedup key", "dedup_key"),
    ("dedup window", "dedup_window"),
    ("due (UTC)", "eta"),
    ("enqueued (UTC)", lambda j: f"{human(j['enqueued_at'])} by {human(j['enqueued_by'])}"),
    ("published (UTC)", "published_at"),
    ("started (UTC)", "started_at"),
    ("finished (UTC)", "finished_at"),
    ("worker", "worker_id"),
    ("last error", "last_error"),
)


def _arguments(value: Any) -> str:
    """Arguments as JSON (what `skyport enqueue` takes), '-' when there are none."""
    return json.dumps(value, ensure_ascii=False, default=json_default) if value else "-"


def _show(args: argparse.Namespace) -> int:
    from dashboard import queries
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        job = ledger.get_job(conn, args.id)
        if job is None:
            raise CommandError(f"no job {args.id}")
        job["audit"] = queries.audit_list(conn, table_name="jobs", record_id=str(args.id), limit=100)
    if args.json:
        print(dumps(job))
        return 0
    width = max(len(label) for label, _ in JOB_FIELDS)
    for label, key in JOB_FIELDS:
        print(f"{label:>{width}}: {human(key(job) if callable(key) else job.get(key))}")
    _print_attempts(job["history"])
    if job["audit"]:
        print("\nops actions (UTC):")
    for entry in reversed(job["audit"]):  # oldest first, like the attempts
        after = (entry["new_values"] or {}).get("after_attempt")
        print(
            f"  {when(entry['created_at'])}  {entry['verb']} by {entry['performed_by']}"
            + (f" after attempt {after}" if after else "")
        )
    return 0


def _print_attempts(history: list[dict[str, Any]]) -> None:
    for h in history:
        print(
            f"\nattempt {h['attempt']}: {h['outcome']} on {human(h['worker_id'])}, "
            f"{when(h['started_at'])} .. {when(h['finished_at'])} UTC"
        )
        if h["error"]:
            print(f"  error: {h['error']}")
        if h["traceback"]:
            print("  " + h["traceback"].rstrip().replace("\n", "\n  "))


def _retry(args: argparse.Namespace) -> int:
    """Through the console's own action: the same retry, audited as `cli:<login>`."""
    from dashboard import actions
    from db import pool

    with pool.connection() as conn:
        if not actions.retry_jobs(conn, actions.Actor.command_line(), [args.id]).changed:
            raise CommandError(_unchanged(conn, args.id, "retried"))
    print(f"job {args.id} queued again")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    """Through the console's own action: the same cancel, audited as `cli:<login>`."""
    from dashboard import actions
    from db import pool

    with pool.connection() as conn:
        if not actions.cancel_jobs(conn, actions.Actor.command_line(), [args.id]).changed:
            raise CommandError(_unchanged(conn, args.id, "cancelled"))
    print(f"job {args.id} cancelled")
    return 0


def _unchanged(conn: psycopg.Connection, job_id: int, done: str) -> str:
    """Why a retry or a cancel changed nothing."""
    from workers import ledger

    job = ledger.get_job(conn, job_id)
    if job is None:
        return f"no job {job_id}"
    if done == "cancelled":
        return f"job {job_id} is {job['state']}: it has already finished"
    if job["state"] in ("dead", "cancelled"):
        return f"job {job_id}: another unfinished job holds its dedup key"
    return f"job {job_id} is {job['state']}: only dead or cancelled jobs can be retried"


def _prune(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    cfg = config.get().worker
    with pool.connection() as conn:
        n = ledger.prune_finished(conn, cfg.keep_succeeded_days, cfg.keep_dead_days)
    print(f"pruned {n} finished jobs")
    return 0


def _ping(args: argparse.Namespace) -> int:
    from db import pool
    from workers import enqueue, ledger

    started = time.monotonic()
    ref = enqueue("ping", enqueued_by=command_user())
    deadline = started + args.timeout
    with pool.connection() as conn:
        while time.monotonic() < deadline:
            job = ledger.get_job(conn, ref.id)
            if job["state"] == "succeeded":
                print(f"pong: job {ref.id} ran in {(time.monotonic() - started) * 1000:.0f} ms round trip")
                return 0
            if job["state"] in ("dead", "cancelled"):
                raise CommandError(f"ping job {ref.id} ended {job['state']}: {job['last_error']}")
            time.sleep(0.01)
    raise CommandError(f"ping job {ref.id} did not run within {args.timeout:.0f}s: is a worker running?")


def _maintenance(args: argparse.Namespace) -> int:
    from db import pool
    from workers import lifeline

    with pool.connection() as conn:
        counts = lifeline.maintenance_pass(conn)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0
