"""Flow control's costs and figures: burn-down with and without a concurrency limit, a priority-0
job behind a backlog, and a rate limit over 10 s.

    .venv/bin/python -m bench.flow [--jobs 20000] [--rounds 2] [--processes 2] [--threads 8] [--baseline REV]

  burn-down    N no-op jobs enqueued (enqueue_many) with no worker running, then the workers
               started: jobs/s from the first job's start to the last one's end (ledger times),
               for an actor without limits (a) and one whose concurrency limit never binds (b),
               in alternating rounds in the same run;
  priority     workers busy with 10,000 waiting no-op jobs of priority 9, then one of priority 0
               enqueued: seconds from its enqueue to its start, and how many were still waiting;
  rate         200 jobs of an actor limited to 20/s: how many start within 10 s of the first;
  baseline     with --baseline REV (a commit before flow control, say), the burn-down without a
               limit of REV's code (a git worktree) and of this tree's, alternately in the same
               run (bench/flow/burn.py in each tree, each with a database of its own schema).

The bench makes its own database and Redis namespace and removes them at the end.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.support.args import add_server_options
from bench.support.cpu import CpuMeter
from bench.support.databases import bench_database, redis_namespaces
from bench.support.facts import finish_run, machine_facts, start_run
from bench.support.procs import REPO, SKYPORT, Workers

BACKLOG = 10_000
RATE_JOBS = 200
RATE_WINDOW_S = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.flow", description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per burn-down (default: %(default)s)")
    p.add_argument(
        "--rounds", type=int, default=2, help="burn-down rounds of each actor (default: %(default)s)"
    )
    p.add_argument("--processes", "-p", type=int, default=2, help="worker processes (default: %(default)s)")
    p.add_argument("--threads", "-t", type=int, default=8, help="threads per process (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds a phase may take at most")
    p.add_argument("--baseline", metavar="REV", help="also compare the no-limit burn-down with REV's code")
    p.add_argument("--only-baseline", action="store_true", help="with --baseline: that comparison only")
    add_server_options(p)
    return p


def main() -> int:
    args = _parser().parse_args()
    tag, log_dir, load_before = start_run("flow")
    namespace = f"skyport_bench_{tag}_flow"
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, namespace),
            bench_database(args.database_url, f"skyport_bench_{tag}") as database_url,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            print(f"  jobs {args.jobs:,}; workers -p {args.processes} -t {args.threads}; logs in {log_dir}\n")
            if not args.only_baseline:
                Bench(args, database_url, namespace, log_dir).run()
        if args.baseline:
            compare_baseline(args)
        ok = True
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0


def compare_baseline(args: argparse.Namespace) -> None:
    """The no-limit burn-down of REV's code and of this tree's, alternately (bench/flow/burn.py):
    jobs/s and CPU ms per job of the workers and their PostgreSQL backends."""
    tree = Path(tempfile.mkdtemp(prefix="skyport-baseline-"))
    subprocess.run(
        ["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), args.baseline],
        check=True,
        capture_output=True,
    )
    runs: dict[str, list[tuple[float, float]]] = {args.baseline: [], "this tree": []}
    try:
        for round_no in range(args.rounds):
            for label, cwd in ((args.baseline, tree), ("this tree", REPO)):
                runs[label].append(_burn_in(cwd, args))
                rate, cpu_ms = runs[label][-1]
                print(
                    f"burn-down, no limit, {label:<12} round {round_no + 1}: {rate:8,.0f} jobs/s, "
                    f"{cpu_ms:.3f} CPU ms per job"
                )
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
    (rate_0, cpu_0), (rate_1, cpu_1) = (
        (statistics.median(r for r, _ in v), statistics.median(c for _, c in v)) for v in runs.values()
    )
    print(
        f"  burn-down without limits, medians of {args.rounds}: {args.baseline} {rate_0:,.0f} jobs/s, "
        f"{cpu_0:.3f} CPU ms per job; this tree {rate_1:,.0f} jobs/s, {cpu_1:.3f} CPU ms per job"
    )
    print(f"  this tree / {args.baseline}: jobs/s {rate_1 / rate_0:.2f}, CPU per job {cpu_1 / cpu_0:.2f}")


def _burn_in(cwd: Path, args: argparse.Namespace) -> tuple[float, float]:
    argv = [sys.executable, str(REPO / "bench" / "flow" / "burn.py"), "--jobs", str(args.jobs)]
    argv += ["--processes", str(args.processes), "--threads", str(args.threads)]
    argv += ["--database-url", args.database_url, "--redis-url", args.redis_url]
    out = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=args.timeout, check=True)
    rate, cpu_ms = out.stdout.split()[-2:]
    return float(rate), float(cpu_ms)


class Bench:
    def __init__(self, args: argparse.Namespace, database_url: str, namespace: str, log_dir: Path) -> None:
        self.args = args
        self.env = {
            "DATABASE_URL": database_url,
            "BROKER_URL": args.redis_url,
            "SKYPORT_BROKER_NAMESPACE": namespace,
            "SKYPORT_EXTRA_MODULES": "bench.flow.actors",
        }
        import os

        os.environ.update(self.env)
        import config

        config.get.cache_clear()
        import workers
        from bench.flow import actors  # noqa: F401 - declared here too, for enqueue

        self.workers = workers
        self.log_dir = log_dir
        self.monitor = psycopg.connect(database_url, autocommit=True)
        self.dbname = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]

    def run(self) -> None:
        rates: dict[str, list[float]] = {"flow_noop": [], "flow_noop_limited": []}
        cpu: dict[str, list[float]] = {"flow_noop": [], "flow_noop_limited": []}
        for round_no in range(self.args.rounds):
            for actor in rates:
                rate, cpu_ms = self.burn_down(actor, round_no)
                rates[actor].append(rate)
                cpu[actor].append(cpu_ms)
                print(
                    f"burn-down {actor:<18} round {round_no + 1}: {rate:8,.0f} jobs/s, "
                    f"{cpu_ms:.3f} CPU ms per job (workers and their PostgreSQL backends)",
                    flush=True,
                )
        waits = self.priority()
        started = self.rate()
        plain, limited = statistics.median(rates["flow_noop"]), statistics.median(rates["flow_noop_limited"])
        print("\nresults")
        print(f"  burn-down (a) no limit          {plain:8,.0f} jobs/s (median of {self.args.rounds})")
        print(f"  burn-down (b) concurrency limit {limited:8,.0f} jobs/s (median of {self.args.rounds})")
        print(f"  (b) / (a)                       {limited / plain:8.2f}   target >= 0.85")
        cpu_a, cpu_b = statistics.median(cpu["flow_noop"]), statistics.median(cpu["flow_noop_limited"])
        print(f"  CPU ms per job (a) {cpu_a:.3f}, (b) {cpu_b:.3f}: (a) / (b) {cpu_a / cpu_b:.2f}")
        for waited_s, behind in waits:
            print(
                f"  priority 0 behind {BACKLOG:,}: started after {waited_s:.3f} s, {behind:,} still waiting"
            )
        print(
            f"  rate 20/s: {started} of {RATE_JOBS} started within {RATE_WINDOW_S:g} s of the first", end=""
        )
        print(" (target 200 ± 10 %)")

    # ---- phases -----------------------------------------------------------------------------

    def start_workers(self, name: str) -> Workers:
        argv = [*SKYPORT, "worker", "-p", str(self.args.processes), "-t", str(self.args.threads)]
        workers = Workers(argv, self.env, self.log_dir / f"{name}.log")
        workers.start()
        self.wait(lambda: self.scalar("SELECT count(*) FROM workers") >= self.args.processes, workers)
        return workers

    def burn_down(self, actor: str, round_no: int) -> tuple[float, float]:
        """Jobs/s, and CPU ms per job of the workers and their PostgreSQL backends (what a loaded
        machine changes least)."""
        self.reset()
        for _ in range(0, self.args.jobs, 1000):
            self.workers.enqueue_many([self.workers.JobSpec(actor)] * 1000)
        workers = self.start_workers(f"burn-{actor}-{round_no}")
        assert workers.proc is not None
        meter = CpuMeter([workers.proc.pid], self.dbname, None)
        before = meter.snapshot()
        try:
            self.wait(lambda: self.count("succeeded") >= self.args.jobs, workers)
            cpu = CpuMeter.per_job_ms(before, meter.snapshot(), self.args.jobs)
        finally:
            workers.stop()
        seconds = self.scalar("SELECT extract(epoch FROM max(finished_at) - min(started_at)) FROM jobs")
        return self.args.jobs / float(seconds), cpu["workers"] + cpu["postgres"]

    def priority(self) -> list[tuple[float, int]]:
        self.reset()
        workers = self.start_workers("priority")
        waits = []
        try:
            for _ in range(3):
                self.workers.enqueue_many([self.workers.JobSpec("flow_noop", priority=9)] * BACKLOG)
                self.wait(lambda: self.count("succeeded") >= 200, workers)
                job_id = self.workers.enqueue("flow_noop", priority=0).id
                self.wait(lambda job_id=job_id: self.state_of(job_id) == "succeeded", workers)
                behind = self.count("queued")
                waited = self.scalar(
                    "SELECT extract(epoch FROM started_at - enqueued_at) FROM jobs WHERE id = %s", (job_id,)
                )
                waits.append((float(waited), behind))
                self.wait(lambda: self.count("queued") + self.count("running") == 0, workers)
                self.reset()
        finally:
            workers.stop()
        return waits

    def rate(self) -> int:
        self.reset()
        workers = self.start_workers("rate")
        try:
            self.workers.enqueue_many([self.workers.JobSpec("flow_noop_rated")] * RATE_JOBS)
            self.wait(lambda: self.count("succeeded") >= RATE_JOBS, workers)
        finally:
            workers.stop()
        return self.scalar(
            "SELECT count(*) FROM jobs WHERE started_at < (SELECT min(started_at) FROM jobs) "
            "+ make_interval(secs => %s)",
            (RATE_WINDOW_S,),
        )

    # ---- helpers ----------------------------------------------------------------------------

    def scalar(self, query: str, params: tuple = ()) -> object:
        return self.monitor.execute(query, params).fetchone()[0]

    def state_of(self, job_id: int) -> object:
        return self.scalar("SELECT state FROM jobs WHERE id = %s", (job_id,))

    def count(self, state: str) -> int:
        return self.monitor.execute("SELECT count(*) FROM jobs WHERE state = %s", (state,)).fetchone()[0]

    def reset(self) -> None:
        self.monitor.execute("DELETE FROM jobs")
        self.monitor.execute("VACUUM ANALYZE jobs, job_attempts")

    def wait(self, done, workers: Workers) -> None:
        deadline = time.monotonic() + self.args.timeout
        while not done():
            workers.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out; {workers.log_tail()}")
            time.sleep(0.02)


if __name__ == "__main__":
    sys.exit(main())
