"""Soak: N minutes of mixed load on real processes, random kill -9 of workers, then a consistency check.

    .venv/bin/python -m bench.soak [--minutes 30] [--kill-every-min 4] [--warmup-min 3] [--interval-s 30]

In a fresh database and Redis namespace of its own (both removed at the end), it runs `skyport web`,
`skyport scheduler` and `--workers` supervised `skyport worker -p P -t T` commands, and loads them with:

  app          `enqueue` / `enqueue_many` of no-op-ish jobs (bench/soak/actors.py) at --jobs-per-s:
               some delayed, some with dedup keys enqueued 2-3 times, some failing 1-2 attempts,
               some in app transactions that roll back, and a poison job every --poison-every-s;
  webhooks     the payments simulator's signed callbacks (duplicates, out of order, failed and
               refunded payments) posted to the web process at --webhooks-per-s;
  notifications `enqueue_notification` at --notifications-per-s, in-app, and a share also over an
               HTTP channel (a local provider from tests/notify/servers.py that fails a few sends);
  kills        every --kill-every-min (+-25 %), kill -9 of one Dramatiq worker process of a random
               slot; its `skyport worker` then exits and the supervisor starts it again at once.

Every --interval-s it prints throughput, queue depths, job latency and each process's RSS. After
the load it stops the kills and the load, waits for the queues to drain (--drain-timeout-s), stops
everything and checks: every job final, no job lost, no dead job but the poison ones, no dedup key
run twice, each job's effect once (a repeat only where a kill cut its attempt short), every
notification sent once per key, every shipment's amount_paid equal to the simulator's ledger and no
drift (jobs/payments' reconciliation query), and RSS growth.

RSS growth is judged per process incarnation (a pid from its first sample to its last; a restarted
worker is a new incarnation with its own warm-up): the mean VmRSS over the first --interval-s
window after --warmup-min from its first sample, against the mean over the last --interval-s window
before the load ended (or before it was killed). Incarnations that did not live through the warm-up
and two whole windows are listed but not judged. Every judged one must stay within --rss-limit.
Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import sys

from bench.soak.runner import Soak
from bench.support.args import add_server_options
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, machine_facts, start_run


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--minutes", type=float, default=30.0, help="minutes of load (default: %(default)s)")
    add("--kill-every-min", type=float, default=4.0, help="minutes between kills, +-25%% (0: none)")
    add("--warmup-min", type=float, default=3.0, help="a process's warm-up before RSS counts")
    add("--interval-s", type=float, default=30.0, help="report interval, and the RSS window")
    add("--sample-s", type=float, default=5.0, help="RSS sampling period")
    add("--workers", type=int, default=2, help="supervised `skyport worker` commands")
    add("--processes", type=int, default=1, help="Dramatiq processes per `skyport worker`")
    add("--threads", type=int, default=8, help="threads per worker process")
    add("--jobs-per-s", type=float, default=40.0, help="app jobs enqueued per second")
    add("--webhooks-per-s", type=float, default=10.0, help="payment callbacks posted per second")
    add("--notifications-per-s", type=float, default=5.0, help="enqueue_notification calls per second")
    add("--poison-every-s", type=float, default=60.0, help="one poison job this often")
    add("--no-http", action="store_true", help="in-app notifications only (no HTTP channel)")
    add("--http-share", type=float, default=0.3, help="share of notifications also sent over HTTP")
    add("--http-fail-share", type=float, default=0.02, help="share of HTTP sends answered 503")
    add("--drain-timeout-s", type=float, default=600.0, help="longest wait for the queues to drain")
    add("--rss-limit", type=float, default=0.10, help="largest RSS growth after warm-up (0.10 = 10%%)")
    add("--seed", type=int, default=1)
    add_server_options(p, logs="the processes' logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag, log_dir, load_before = start_run("soak")
    namespace = f"skyport_soak_{tag}"
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, namespace),
            bench_database(args.database_url, f"skyport_soak_{tag}") as database_url,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            ok = Soak(args, database_url, namespace, log_dir).run()
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
