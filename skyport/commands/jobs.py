"""`skyport enqueue | jobs ... | ping | maintenance`: the ledger's jobs from the command line."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import config
from jobs.family import command_user
from skyport.errors import CommandError
from skyport.output import json_default, when


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
    cmd.set_defaults(run=_enqueue)

    jobs = sub.add_parser("jobs", help="inspect and act on jobs").add_subparsers(
        title="jobs commands", metavar="CMD"
    )
    cmd = jobs.add_parser("list", help="list jobs, newest first")
    cmd.add_argument("--state", help="only jobs in this state (queued, running, dead, ...)")
    cmd.add_argument("--actor", help="only jobs of this actor")
    cmd.add_argument("--limit", type=int, default=50, help="at most this many rows (default: %(default)s)")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.set_defaults(run=_list)
    for name, run, text in (
        ("show", _show, "show a job with every attempt"),
        ("retry", _retry, "retry a dead or cancelled job"),
        ("cancel", _cancel, "cancel a job that has not finished"),
    ):
        cmd = jobs.add_parser(name, help=text)
        cmd.add_argument("id", type=int, help="the job's id")
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
            enqueued_by="cli",
        )
    except EnqueueError as exc:
        raise CommandError(str(exc)) from None
    if ref.created:
        print(ref.id)
    else:
        print(f"{ref.id} (existing job for dedup key {args.dedup_key!r}, {ref.state})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        try:
            rows = ledger.list_jobs(conn, state=args.state, actor=args.actor, limit=args.limit)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(rows, default=json_default, indent=2))
        return 0
    print(f"{'ID':>8}  {'STATE':<10} {'ACTOR':<28} {'QUEUE':<12} {'TRIES':>5}  {'ENQUEUED (UTC)':<19}  ERROR")
    for r in rows:
        print(
            f"{r['id']:>8}  {r['state']:<10} {r['actor'][:28]:<28} {r['queue'][:12]:<12} "
            f"{r['attempts']:>2}/{r['max_attempts']:<2}  {when(r['enqueued_at'])}  "
            f"{(r['last_error'] or '')[:60]}"
        )
    return 0


def _show(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        job = ledger.get_job(conn, args.id)
    if job is None:
        raise CommandError(f"no job {args.id}")
    history = job.pop("history")
    for key, value in job.items():
        print(f"{key:>13}: {json_default(value) if isinstance(value, datetime | timedelta) else value}")
    for h in history:
        print(
            f"\nattempt {h['attempt']}: {h['outcome']} on {h['worker_id']}, "
            f"{when(h['started_at'])} .. {when(h['finished_at'])}"
        )
        if h["error"]:
            print(f"  error: {h['error']}")
        if h["traceback"]:
            print("  " + h["traceback"].rstrip().replace("\n", "\n  "))
    return 0


def _retry(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        try:
            done = ledger.job_retry(conn, args.id, extra_attempts=1)
        except ledger.DedupKeyTaken as exc:
            raise CommandError(str(exc)) from None
        if not done:
            job = ledger.get_job(conn, args.id)
            raise CommandError(
                f"job {args.id} is {job['state']}: only dead or cancelled jobs can be retried"
                if job
                else f"no job {args.id}"
            )
    print(f"job {args.id} queued again")
    return 0


def _cancel(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        if not ledger.job_cancel(conn, args.id, by=command_user()):
            job = ledger.get_job(conn, args.id)
            raise CommandError(
                f"job {args.id} is {job['state']}: it has already finished" if job else f"no job {args.id}"
            )
    print(f"job {args.id} cancelled")
    return 0


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
    ref = enqueue("ping", enqueued_by="cli")
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
