"""`skyport`: the command line of Skyport Jobs.

skyport db upgrade | downgrade REV | current
skyport web [--host H] [--port P]
skyport worker [--processes N] [--threads M] [--queues Q ...] [--shutdown-timeout S]
skyport enqueue ACTOR [--args JSON] [--kwargs JSON] [--dedup-key KEY] [--delay S] [--queue Q]
skyport jobs list [--state S] [--actor A] [--limit N] [--json] | show ID | retry ID | cancel ID | prune
skyport ping [--timeout S]
skyport maintenance
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import config

# Seconds a worker may take to finish running jobs after SIGTERM before giving them back.
DEFAULT_SHUTDOWN_GRACE_S = 30.0
# How long Dramatiq's main process waits for its worker processes' boot (its default: 30 s).
DEFAULT_WORKER_FORK_TIMEOUT_MS = 1000
# Modules with `add_commands(subparsers)`: the job families' own commands.
COMMAND_MODULES: tuple[str, ...] = (
    "jobs.partitions.cli",
    "jobs.matviews.cli",
    "jobs.notifications.cli",
    "dashboard.cli",
    "jobs.payments.cli",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        config.get.cache_clear()
        config.get()  # fail fast, with one line, on a malformed variable
        return args.run(args) or 0
    except config.ConfigError as exc:
        print(f"skyport: configuration error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"skyport: cannot reach PostgreSQL (DATABASE_URL): {first}", file=sys.stderr)
        return 3
    except CommandError as exc:
        print(f"skyport: {exc}", file=sys.stderr)
        return 1


class CommandError(Exception):
    """A command could not do what was asked; the message says why."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="skyport", description="Skyport Jobs: workers, scheduler, web, ops.")
    sub = p.add_subparsers(title="commands", metavar="COMMAND")

    db = sub.add_parser("db", help="database migrations").add_subparsers(title="db commands", metavar="CMD")
    cmd = db.add_parser("upgrade", help="migrate to the newest schema (creates the database if missing)")
    cmd.set_defaults(run=_db_upgrade)
    cmd = db.add_parser("downgrade", help="migrate down to a revision ('base' for an empty schema)")
    cmd.add_argument("revision")
    cmd.set_defaults(run=_db_downgrade)
    db.add_parser("current", help="print the schema revision").set_defaults(run=_db_current)

    cmd = sub.add_parser("web", help="run the web process (dashboard, webhooks, health, metrics)")
    cmd.add_argument("--host", default="127.0.0.1")
    cmd.add_argument("--port", type=int, default=None, help="default: $PORT, else 8000")
    cmd.add_argument(
        "--workers",
        "-w",
        type=int,
        default=None,
        help="processes serving the port (default: $WEB_CONCURRENCY or 1)",
    )
    cmd.add_argument(
        "--access-log",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="one log line per request (default: $SKYPORT_WEB_ACCESS_LOG or on)",
    )
    cmd.set_defaults(run=_web)

    cmd = sub.add_parser("worker", help="run Dramatiq worker processes")
    cmd.add_argument(
        "--processes", "-p", type=int, default=None, help="default: $SKYPORT_WORKER_PROCESSES or 2"
    )
    cmd.add_argument("--threads", "-t", type=int, default=None, help="default: $SKYPORT_WORKER_THREADS or 8")
    cmd.add_argument("--queues", "-Q", nargs="*", default=None, help="default: every queue")
    cmd.add_argument(
        "--shutdown-timeout",
        type=float,
        default=DEFAULT_SHUTDOWN_GRACE_S,
        help="seconds to finish running jobs after SIGTERM (default: %(default)s)",
    )
    cmd.set_defaults(run=_worker)

    sub.add_parser("scheduler", help="run the scheduler (periodic jobs) in the foreground").set_defaults(
        run=_scheduler
    )
    sched = sub.add_parser("schedule", help="the periodic jobs").add_subparsers(
        title="schedule commands", metavar="CMD"
    )
    sched.add_parser("list", help="every entry with its trigger, next and last tick").set_defaults(
        run=_schedule_list
    )
    for name, run, text in (
        ("run", _schedule_run, "enqueue one run of an entry now"),
        ("enable", _schedule_enable, "switch an entry on (persisted)"),
        ("disable", _schedule_disable, "switch an entry off (persisted)"),
    ):
        cmd = sched.add_parser(name, help=text)
        cmd.add_argument("name")
        cmd.set_defaults(run=run)

    cmd = sub.add_parser("enqueue", help="enqueue a job")
    cmd.add_argument("actor")
    cmd.add_argument("--args", type=_json_arg(list), default=[], help="JSON list of positional arguments")
    cmd.add_argument("--kwargs", type=_json_arg(dict), default={}, help="JSON object of keyword arguments")
    cmd.add_argument("--dedup-key")
    cmd.add_argument(
        "--dedup-window", type=float, help="seconds the key stays blocked after the job finished"
    )
    cmd.add_argument("--delay", type=float, help="seconds to wait before the job may run")
    cmd.add_argument("--queue")
    cmd.set_defaults(run=_enqueue)

    jobs = sub.add_parser("jobs", help="inspect and act on jobs").add_subparsers(
        title="jobs commands", metavar="CMD"
    )
    cmd = jobs.add_parser("list", help="list jobs, newest first")
    cmd.add_argument("--state")
    cmd.add_argument("--actor")
    cmd.add_argument("--limit", type=int, default=50)
    cmd.add_argument("--json", action="store_true")
    cmd.set_defaults(run=_jobs_list)
    for name, run, text in (
        ("show", _jobs_show, "show a job with every attempt"),
        ("retry", _jobs_retry, "retry a dead or cancelled job"),
        ("cancel", _jobs_cancel, "cancel a job that has not finished"),
    ):
        cmd = jobs.add_parser(name, help=text)
        cmd.add_argument("id", type=int)
        cmd.set_defaults(run=run)
    jobs.add_parser("prune", help="delete finished jobs past their retention").set_defaults(run=_jobs_prune)

    cmd = sub.add_parser("ping", help="enqueue the ping actor and wait for it: the pipeline's smoke test")
    cmd.add_argument("--timeout", type=float, default=30.0)
    cmd.set_defaults(run=_ping)

    sub.add_parser(
        "maintenance", help="recover jobs of dead workers, republish lost messages (once)"
    ).set_defaults(run=_maintenance)
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return p


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


# ---- db ---------------------------------------------------------------------------------------


def _db_upgrade(args: argparse.Namespace) -> int:
    from db import migrate

    if migrate.create_database_if_missing():
        print("created the database")
    migrate.upgrade("heads")
    print(f"schema at {migrate.current_revision()}")
    return 0


def _db_downgrade(args: argparse.Namespace) -> int:
    from db import migrate

    migrate.downgrade(args.revision)
    print(f"schema at {migrate.current_revision() or 'base'}")
    return 0


def _db_current(args: argparse.Namespace) -> int:
    from db import migrate

    current, head = migrate.current_revision(), migrate.head_revision()
    print(f"{current or 'base'}{' (head)' if current == head else f' (head is {head})'}")
    return 0


# ---- processes --------------------------------------------------------------------------------


def _web(args: argparse.Namespace) -> int:
    import uvicorn

    _start_observability("web")
    cfg = config.get()
    port = args.port or int(os.environ.get("PORT") or 8000)
    workers = cfg.web.concurrency if args.workers is None else args.workers
    if workers < 1:
        raise CommandError(f"--workers must be at least 1, got {workers}")
    uvicorn.run(
        "dashboard.app:app",
        host=args.host,
        port=port,
        workers=workers,
        access_log=cfg.web.access_log if args.access_log is None else args.access_log,
        log_level="info",
        proxy_headers=True,
        log_config=None,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from dramatiq import cli as dramatiq_cli

    from workers import boot_gate

    _start_observability("worker")
    cfg = config.get()
    if cfg.worker.metrics_port:
        from workers.observability import set_prometheus_env

        set_prometheus_env(cfg)
    argv = [
        "workers.app:broker",
        "--skip-logging",
        "--processes",
        str(args.processes or cfg.worker.processes),
        "--threads",
        str(args.threads or cfg.worker.threads),
        "--worker-shutdown-timeout",
        str(int(args.shutdown_timeout * 1000)),
        # Dramatiq's main process waits this long for its worker processes to report ready before
        # it starts fork processes (we have none) and watches for dead ones: a worker killed during
        # boot (by a job it took at once) would otherwise go unnoticed for 30 s.
        "--worker-fork-timeout",
        str(DEFAULT_WORKER_FORK_TIMEOUT_MS),
    ]
    if args.queues:
        argv += ["--queues", *args.queues]
    boot_gate.install()
    return dramatiq_cli.main(dramatiq_cli.make_argument_parser().parse_args(argv))


def _scheduler(args: argparse.Namespace) -> int:
    from scheduler import runner, schedule

    _start_observability("scheduler")
    try:
        return runner.main()
    except schedule.ScheduleError as exc:
        raise CommandError(str(exc)) from None


def _schedule_entry(name: str) -> Any:
    from scheduler import schedule

    jobs = {job.name: job for job in schedule.load_schedule()}
    if name not in jobs:
        raise CommandError(f"no schedule entry {name!r} (entries: {', '.join(sorted(jobs))})")
    return jobs[name]


def _schedule_list(args: argparse.Namespace) -> int:
    from db import pool
    from scheduler import schedule, state

    jobs = schedule.load_schedule()
    now = datetime.now(UTC)
    with pool.connection() as conn:
        last = state.last_ticks(conn, [j.name for j in jobs])
        switched = state.overrides(conn)
    print(f"{'NAME':<24} {'TRIGGER':<20} {'ON':<4} {'NEXT (UTC)':<19}  {'LAST (UTC)':<19}  LAST OUTCOME")
    for job in jobs:
        on = job.enabled and switched.get(job.name, True)
        nxt = job.build_trigger().get_next_fire_time(None, now) if on else None
        tick = last.get(job.name) or {}
        outcome = tick.get("state", "-")
        if tick.get("last_error"):
            outcome += f": {tick['last_error'][:50]}"
        trigger = job.trigger + ("" if job.timezone == "UTC" else f" {job.timezone}")
        print(
            f"{job.name:<24} {trigger:<20} {'yes' if on else 'no':<4} {_when(nxt and nxt.astimezone(UTC))}  "
            f"{_when(tick.get('fire_time'))}  {outcome}"
        )
    return 0


def _schedule_run(args: argparse.Namespace) -> int:
    from scheduler import runner

    ref = runner.run_now(_schedule_entry(args.name), by=f"cli:{os.environ.get('USER', '?')}")
    print(f"{args.name}: job {ref.id}")
    return 0


def _schedule_switch(args: argparse.Namespace, enabled: bool) -> int:
    from db import pool
    from scheduler import state

    _schedule_entry(args.name)
    with pool.connection() as conn:
        state.set_enabled(conn, args.name, enabled, by=f"cli:{os.environ.get('USER', '?')}")
    print(f"{args.name}: {'enabled' if enabled else 'disabled'}")
    return 0


def _schedule_enable(args: argparse.Namespace) -> int:
    return _schedule_switch(args, True)


def _schedule_disable(args: argparse.Namespace) -> int:
    return _schedule_switch(args, False)


def _start_observability(component: str) -> None:
    """Logs (LOG_FORMAT=json for JSON lines) and Sentry (SENTRY_DSN) for a long-running process."""
    from workers import observability

    observability.configure_logging()
    observability.init_sentry(component)


# ---- jobs -------------------------------------------------------------------------------------


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


def _jobs_list(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        try:
            rows = ledger.list_jobs(conn, state=args.state, actor=args.actor, limit=args.limit)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
    if args.json:
        print(json.dumps(rows, default=_json_default, indent=2))
        return 0
    print(f"{'ID':>8}  {'STATE':<10} {'ACTOR':<28} {'QUEUE':<12} {'TRIES':>5}  {'ENQUEUED (UTC)':<19}  ERROR")
    for r in rows:
        print(
            f"{r['id']:>8}  {r['state']:<10} {r['actor'][:28]:<28} {r['queue'][:12]:<12} "
            f"{r['attempts']:>2}/{r['max_attempts']:<2}  {_when(r['enqueued_at'])}  "
            f"{(r['last_error'] or '')[:60]}"
        )
    return 0


def _jobs_show(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        job = ledger.get_job(conn, args.id)
    if job is None:
        raise CommandError(f"no job {args.id}")
    history = job.pop("history")
    for key, value in job.items():
        print(f"{key:>13}: {_json_default(value) if isinstance(value, datetime | timedelta) else value}")
    for h in history:
        print(
            f"\nattempt {h['attempt']}: {h['outcome']} on {h['worker_id']}, "
            f"{_when(h['started_at'])} .. {_when(h['finished_at'])}"
        )
        if h["error"]:
            print(f"  error: {h['error']}")
        if h["traceback"]:
            print("  " + h["traceback"].rstrip().replace("\n", "\n  "))
    return 0


def _jobs_retry(args: argparse.Namespace) -> int:
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


def _jobs_cancel(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    with pool.connection() as conn:
        if not ledger.job_cancel(conn, args.id, by=f"cli:{os.environ.get('USER', '?')}"):
            job = ledger.get_job(conn, args.id)
            raise CommandError(
                f"job {args.id} is {job['state']}: it has already finished" if job else f"no job {args.id}"
            )
    print(f"job {args.id} cancelled")
    return 0


def _jobs_prune(args: argparse.Namespace) -> int:
    from db import pool
    from workers import ledger

    cfg = config.get()
    with pool.connection() as conn:
        n = ledger.prune_finished(conn, cfg.worker.keep_succeeded_days, cfg.worker.keep_dead_days)
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
            state = conn.execute("SELECT state FROM jobs WHERE id = %s", (ref.id,)).fetchone()[0]
            if state == "succeeded":
                print(f"pong: job {ref.id} ran in {(time.monotonic() - started) * 1000:.0f} ms round trip")
                return 0
            if state in ("dead", "cancelled"):
                raise CommandError(
                    f"ping job {ref.id} ended {state}: {ledger.get_job(conn, ref.id)['last_error']}"
                )
            time.sleep(0.01)
    raise CommandError(f"ping job {ref.id} did not run within {args.timeout:.0f}s: is a worker running?")


def _maintenance(args: argparse.Namespace) -> int:
    from db import pool
    from workers import lifeline

    with pool.connection() as conn:
        counts = lifeline.maintenance_pass(conn)
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    raise TypeError(f"not JSON: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
