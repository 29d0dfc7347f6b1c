"""`skyport web | worker | scheduler`: the long-running processes of the Procfile."""

from __future__ import annotations

import argparse
import os

import config
from skyport.errors import CommandError

# Seconds a worker may take to finish running jobs after SIGTERM before giving them back.
DEFAULT_SHUTDOWN_GRACE_S = 30.0
# How long Dramatiq's main process waits for its worker processes' boot (its default: 30 s).
DEFAULT_WORKER_FORK_TIMEOUT_MS = 1000
# What a worker process imports: the broker with every actor declared.
WORKER_APP = "skyport.app:broker"


def add_commands(sub: argparse._SubParsersAction) -> None:
    cmd = sub.add_parser("web", help="run the web process (dashboard, webhooks, health, metrics)")
    cmd.add_argument("--host", default=None, help="address to listen on (default: $HOST, else 127.0.0.1)")
    cmd.add_argument("--port", type=int, default=None, help="port to listen on (default: $PORT, else 8000)")
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
        "--processes",
        "-p",
        type=int,
        default=None,
        help="worker processes (default: $SKYPORT_WORKER_PROCESSES or 2)",
    )
    cmd.add_argument(
        "--threads",
        "-t",
        type=int,
        default=None,
        help="threads per process (default: $SKYPORT_WORKER_THREADS or 8)",
    )
    cmd.add_argument(
        "--queues", "-Q", nargs="*", default=None, help="queues to consume (default: every queue)"
    )
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


def _start_logging() -> None:
    """Log lines (LOG_FORMAT=json for JSON lines) of a long-running process; Sentry started with
    the command line (skyport/main.py)."""
    from workers import observability

    observability.configure_logging()


def _web(args: argparse.Namespace) -> int:
    import uvicorn

    _start_logging()
    cfg = config.get().web
    workers = cfg.concurrency if args.workers is None else args.workers
    if workers < 1:
        raise CommandError(f"--workers must be at least 1, got {workers}")
    uvicorn.run(
        "dashboard.app:app",
        host=args.host or cfg.host,
        port=args.port or cfg.port,
        workers=workers,
        access_log=cfg.access_log if args.access_log is None else args.access_log,
        log_level="info",
        proxy_headers=False,  # the app reads X-Forwarded-* from SKYPORT_TRUSTED_PROXIES only
        log_config=None,
    )
    return 0


def _worker(args: argparse.Namespace) -> int:
    from dramatiq import cli as dramatiq_cli

    from workers import boot_gate

    _start_logging()
    cfg = config.get()
    if cfg.worker.metrics_port:
        from workers.observability import set_prometheus_env

        set_prometheus_env(cfg)
    threads = args.threads or cfg.worker.threads
    if threads != cfg.worker.threads:
        # Each worker process sizes its connection pool from the configuration (threads + helpers,
        # db/pool.py): --threads must reach the processes Dramatiq forks too.
        os.environ["SKYPORT_WORKER_THREADS"] = str(threads)
        config.get.cache_clear()
    argv = [
        WORKER_APP,
        "--skip-logging",
        "--processes",
        str(args.processes or cfg.worker.processes),
        "--threads",
        str(threads),
        "--worker-shutdown-timeout",
        str(int(args.shutdown_timeout * 1000)),
        # Dramatiq's main process waits this long for its worker processes to report ready before
        # it starts fork processes (we have none) and watches for dead ones: a worker killed during
        # boot (by a job it took at once) would otherwise go unnoticed for 30 s.
        "--worker-fork-timeout",
        str(DEFAULT_WORKER_FORK_TIMEOUT_MS),
    ]
    if args.queues:
        _check_queues(args.queues)
        argv += ["--queues", *args.queues]
    boot_gate.install()
    return dramatiq_cli.main(dramatiq_cli.make_argument_parser().parse_args(argv))


def _check_queues(queues: list[str]) -> None:
    """A worker told to consume a queue no actor declares would wait for ever, saying nothing."""
    from skyport.app import broker

    declared = broker.get_declared_queues()
    unknown = sorted(set(queues) - declared)
    if unknown:
        raise CommandError(
            f"unknown queue {', '.join(unknown)} (declared queues: {', '.join(sorted(declared))})"
        )


def _scheduler(args: argparse.Namespace) -> int:
    from scheduler import runner, schedule

    _start_logging()
    try:
        return runner.main()
    except schedule.ScheduleError as exc:
        raise CommandError(str(exc)) from None
