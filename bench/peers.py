"""Side by side: the same jobs, each one small PostgreSQL write, through bare Dramatiq, Skyport's
ledger path, procrastinate and pgqueuer, on the same machine in the same run.

    .venv/bin/pip install -e '.[bench]'          # procrastinate, pgqueuer, asyncpg
    .venv/bin/python -m bench.peers [--jobs 20000] [--processes 2] [--systems bare,ledger,...]
    .venv/bin/python -m bench.peers --sweep --jobs 5000   # try each peer's candidate settings

Each job inserts one row (its job number) into `bench_writes` in its system's own database.
For every system and setting (its documented defaults, and its best setting found: see
bench/peer_systems.py), with its 2 worker processes already running and warmed up:

  one by one   N jobs enqueued one call per job from this process (actor.send, enqueue(),
               task.defer(), queries.enqueue(one job)); end-to-end = first enqueue to last job done;
  batched      the same with --enqueue-batch jobs per call (a Dramatiq group, enqueue_many,
               task.batch_defer, queries.enqueue(lists)).

A job is done by its system's own record: message acknowledged (bare Dramatiq), ledger row
`succeeded`, procrastinate job `succeeded`, pgqueuer job gone from its queue table. After each
phase every job number must be in `bench_writes` exactly once. Each system gets a fresh database
(its schema set up by its own tooling) and, for the Redis brokers, a key namespace of the bench's
own; everything is dropped at the end. Ratios are ours / theirs: above 1 we are faster.
"""

from __future__ import annotations

import argparse
import math
import os
import secrets
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.peer_systems import (
    BareSystem,
    LedgerSystem,
    PgqueuerSystem,
    ProcrastinateSystem,
    Setting,
    System,
    log_path,
    plain_database,
)
from bench.proc_cpu import ROLES, CpuMeter
from bench.throughput import (
    Workers,
    _fmt,
    _load,
    _rate,
    bench_database,
    finish_run,
    machine_facts,
    redis_namespaces,
    timed_calls,
    wait_until_complete,
)

SYSTEM_KEYS = ("bare", "ledger", "procrastinate", "pgqueuer")
OURS = "ledger"
PHASES = ("one", "batch")
PHASE_LABELS = {"one": "one by one", "batch": "batched"}
# Jobs run through a system's fresh workers before any phase is timed (imports, connections,
# prepared statements), then cleared.
WARMUP_JOBS = 200
# The targets: ours / procrastinate and ours / pgqueuer at its default settings.
TARGET_VS_PROCRASTINATE = 5.0
TARGET_VS_PGQUEUER_DEFAULT = 1.0


@dataclass
class PhaseResult:
    jobs: int
    enqueue_s: float = math.nan
    end_to_end_s: float = math.nan
    writes: int = 0
    distinct_writes: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per job, by role

    @property
    def enqueue_rate(self) -> float:
        return _rate(self.jobs, self.enqueue_s)

    @property
    def end_to_end_rate(self) -> float:
        return _rate(self.jobs, self.end_to_end_s)

    @property
    def cpu_total_ms(self) -> float:
        return sum(self.cpu_ms.values()) if self.cpu_ms else math.nan

    @property
    def writes_ok(self) -> bool:
        return self.writes == self.distinct_writes == self.jobs


@dataclass
class RunResult:
    system: str
    label: str
    setting: Setting
    phases: dict[str, PhaseResult] = field(default_factory=dict)


# ---- running one system -----------------------------------------------------------------------


class WorkerGroup:
    """A system's worker commands (one with -p N, or N processes of one), started and stopped together."""

    def __init__(self, system: System, setting: Setting, processes: int, log_dir: Path) -> None:
        self.members = [
            Workers(argv, env, log_path(log_dir, system, setting, i))
            for i, (argv, env) in enumerate(system.worker_commands(setting, processes))
        ]

    def start(self) -> None:
        for member in self.members:
            member.start()

    def check_alive(self) -> None:
        for member in self.members:
            member.check_alive()

    def stop(self) -> None:
        for member in self.members:
            member.stop()

    def pids(self) -> list[int]:
        return [member.proc.pid for member in self.members if member.proc is not None]


def run_phase(
    system: System, phase: str, jobs: int, args: argparse.Namespace, group: WorkerGroup, meter: CpuMeter
) -> PhaseResult:
    """Enqueue `jobs` jobs with the workers running; wait until all are done; check the writes."""
    result = PhaseResult(jobs)
    numbers = list(range(jobs))
    cpu_before = meter.snapshot()
    started = time.monotonic()
    if phase == "one":
        timed_calls(lambda i: system.send_one(numbers[i]), jobs)
    else:
        chunks = [numbers[i : i + args.enqueue_batch] for i in range(0, jobs, args.enqueue_batch)]
        timed_calls(lambda i: system.send_batch(chunks[i]), len(chunks))
    result.enqueue_s = time.monotonic() - started
    finished = wait_until_complete(system, jobs, started + args.timeout, group.check_alive)
    result.end_to_end_s = finished - started
    result.cpu_ms = meter.per_job_ms(cpu_before, meter.snapshot(), jobs)
    result.writes, result.distinct_writes = system.writes()
    system.reset()
    return result


def run_setting(
    system: System, setting: Setting, args: argparse.Namespace, log_dir: Path, dbname: str
) -> RunResult:
    run = RunResult(system.key, system.label, setting)
    group = WorkerGroup(system, setting, args.processes, log_dir)
    redis_port = (urlsplit(args.redis_url).port or 6379) if system.key in ("bare", "ledger") else None
    print(f"{system.label} [{setting.name}: {setting.summary}]", flush=True)
    try:
        group.start()
        meter = CpuMeter(group.pids(), dbname, redis_port)
        run_phase(system, "one", WARMUP_JOBS, args, group, meter)
        for phase in args.phases:
            run.phases[phase] = outcome = run_phase(system, phase, args.jobs, args, group, meter)
            cpu = ", ".join(f"{role} {outcome.cpu_ms[role]:.2f}" for role in ROLES)
            print(
                f"  {PHASE_LABELS[phase]:<11} enqueue {_fmt(outcome.enqueue_rate):>7} jobs/s, "
                f"end-to-end {_fmt(outcome.end_to_end_rate):>7} jobs/s ({outcome.end_to_end_s:.2f} s), "
                f"writes {outcome.writes:,} ({outcome.distinct_writes:,} distinct)"
                f"{'' if outcome.writes_ok else '  <-- WRONG'}\n"
                f"  {'':<11} CPU ms per job: {cpu}; total {outcome.cpu_total_ms:.2f}",
                flush=True,
            )
    finally:
        group.stop()
    system.reset()
    return run


# ---- report -----------------------------------------------------------------------------------


def _ratio(ours: float, theirs: float) -> float:
    return ours / theirs if theirs and not math.isnan(ours) and not math.isnan(theirs) else math.nan


def ours_run(runs: list[RunResult]) -> RunResult | None:
    return next((r for r in runs if r.system == OURS), None)


def print_table(runs: list[RunResult], phases: tuple[str, ...]) -> None:
    ours = ours_run(runs)
    head = f"{'system [setting]':<40}"
    for phase in phases:
        head += f" {PHASE_LABELS[phase] + ': enq/s':>20} {'end-to-end/s':>13} {'ours/it':>8}"
    print(f"\n{head}")
    for run in runs:
        line = f"{run.label + ' [' + run.setting.name + ']':<40}"
        for phase in phases:
            outcome = run.phases.get(phase)
            if outcome is None:
                line += f" {'-':>20} {'-':>13} {'':>8}"
                continue
            ratio = _ratio(ours.phases[phase].end_to_end_rate, outcome.end_to_end_rate) if ours else math.nan
            line += (
                f" {_fmt(outcome.enqueue_rate):>20} {_fmt(outcome.end_to_end_rate):>13}"
                f" {_fmt(ratio, 2) if run is not ours else '':>8}"
            )
        print(line)
    for run in runs:
        print(f"  {run.label} [{run.setting.name}]: {run.setting.summary}")


def print_cpu_table(runs: list[RunResult], phases: tuple[str, ...]) -> None:
    """CPU per job by role, and the rate the machine's cores would allow at that cost."""
    cores = os.cpu_count() or 1
    print(f"\nCPU ms per job, end-to-end phases ({cores} cores: at most {cores * 1000:,} / total jobs/s)")
    print(
        f"{'system [setting]':<40} {'phase':<11}"
        + "".join(f" {role:>9}" for role in ROLES)
        + "     total   cap/s"
    )
    for run in runs:
        for phase in phases:
            outcome = run.phases.get(phase)
            if outcome is None or not outcome.cpu_ms:
                continue
            print(
                f"{run.label + ' [' + run.setting.name + ']':<40} {PHASE_LABELS[phase]:<11}"
                + "".join(f" {outcome.cpu_ms[role]:>9.2f}" for role in ROLES)
                + f" {outcome.cpu_total_ms:>9.2f} {_fmt(cores * 1000 / outcome.cpu_total_ms):>7}"
            )


def target_rows(runs: list[RunResult], phases: tuple[str, ...]) -> list[tuple[str, float, float]]:
    """(what, measured ratio ours/theirs, the target); for each phase and each peer setting."""
    ours = ours_run(runs)
    rows = []
    if ours is None:
        return rows
    for phase in phases:
        mine = ours.phases[phase].end_to_end_rate
        for run in runs:
            if run.system == "procrastinate" or (run.system == "pgqueuer" and run.setting.name == "default"):
                goal = (
                    TARGET_VS_PROCRASTINATE if run.system == "procrastinate" else TARGET_VS_PGQUEUER_DEFAULT
                )
                ratio = _ratio(mine, run.phases[phase].end_to_end_rate)
                rows.append((f"{PHASE_LABELS[phase]}: ours / {run.label} [{run.setting.name}]", ratio, goal))
            elif run.system == "pgqueuer":
                ratio = _ratio(mine, run.phases[phase].end_to_end_rate)
                rows.append(
                    (f"{PHASE_LABELS[phase]}: ours / {run.label} [{run.setting.name}]", ratio, math.nan)
                )
    return rows


def print_targets(rows: list[tuple[str, float, float]]) -> None:
    if not rows:
        return
    print("\nTargets (end-to-end, ours / theirs)")
    for label, ratio, goal in rows:
        if math.isnan(goal):
            verdict = "(no target: how far ahead or behind)"
        else:
            verdict = f">= {goal:g}  {'PASS' if ratio >= goal else 'MISS'}"
        print(f"  {label:<58} {_fmt(ratio, 2):>7}  {verdict}")


def all_writes_ok(runs: list[RunResult]) -> bool:
    return all(outcome.writes_ok for run in runs for outcome in run.phases.values())


# ---- main -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per phase (default: %(default)s)")
    p.add_argument("--processes", "-p", type=int, default=2, help="worker processes per system")
    p.add_argument("--enqueue-batch", type=int, default=1000, help="jobs per batched enqueue call")
    p.add_argument("--systems", default=",".join(SYSTEM_KEYS), help="comma-separated, of %(default)s")
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated, of %(default)s")
    p.add_argument(
        "--sweep", action="store_true", help="run each peer's candidate settings, not default+tuned"
    )
    p.add_argument(
        "--history", type=int, default=20_000, help="finished jobs in the ledger (bench.throughput)"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds a phase may take at most")
    p.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="server to use (a database per system is created and dropped there)",
    )
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = _parser()
    args = parser.parse_args(argv)
    args.systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    args.phases = tuple(s.strip() for s in args.phases.split(",") if s.strip())
    for name, chosen, known in (("--systems", args.systems, SYSTEM_KEYS), ("--phases", args.phases, PHASES)):
        unknown = set(chosen) - set(known)
        if unknown or not chosen:
            parser.error(
                f"{name}: choose from {', '.join(known)} (got {', '.join(sorted(unknown)) or 'none'})"
            )
    if args.jobs < 1 or args.enqueue_batch < 1 or args.processes < 1:
        parser.error("--jobs, --enqueue-batch and --processes must be at least 1")
    if {"procrastinate", "pgqueuer"} & set(args.systems):
        try:
            import pgqueuer  # noqa: F401
            import procrastinate  # noqa: F401
        except ImportError as exc:
            parser.error(f"{exc.name} is not installed: .venv/bin/pip install -e '.[bench]'")
    return args


def database_name(tag: str, key: str) -> str:
    return f"skyport_peers_{tag}_{key}"


def open_system(key: str, args: argparse.Namespace, tag: str, stack: ExitStack) -> System:
    """The system on a database of its own (and a Redis namespace for the Dramatiq ones)."""
    name = database_name(tag, key)
    namespace = f"skyport_peers_{tag}_{key}"
    if key in ("bare", "ledger"):
        stack.enter_context(redis_namespaces(args.redis_url, namespace))
    if key == "ledger":
        url = stack.enter_context(bench_database(args.database_url, name))
        system: System = LedgerSystem(url, args.redis_url, namespace, args.history)
    else:
        url = stack.enter_context(plain_database(args.database_url, name))
        if key == "bare":
            system = BareSystem(args.redis_url, namespace, url)
        elif key == "procrastinate":
            system = ProcrastinateSystem(url)
        else:
            system = PgqueuerSystem(url)
    stack.callback(system.close)
    return system


def library_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for package in ("procrastinate", "pgqueuer", "asyncpg", "psycopg-pool"):
        try:
            found.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            found.append(f"{package} (not installed)")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM cleans up like Ctrl-C: workers stopped, databases dropped, Redis keys deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tag = secrets.token_hex(4)
    log_dir = Path(tempfile.mkdtemp(prefix="skyport-peers-"))
    load_before = _load()
    print(f"skyport peers {tag}: {' '.join(sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before: {load_before}")
    runs: list[RunResult] = []
    ok = False
    try:
        with ExitStack() as stack:
            for key in args.systems:
                system = open_system(key, args, tag, stack)
                if not runs:
                    facts = machine_facts(args.database_url, args.redis_url)
                    facts["libraries"] = library_versions()
                    for name, value in facts.items():
                        print(f"  {name:<14} {value}")
                    print(
                        f"  jobs {args.jobs:,} per phase; {args.processes} worker processes per system; "
                        f"batches of {args.enqueue_batch:,}; logs in {log_dir}\n",
                        flush=True,
                    )
                for setting in system.worker_settings(args.sweep):
                    runs.append(run_setting(system, setting, args, log_dir, database_name(tag, key)))
        print_table(runs, args.phases)
        print_cpu_table(runs, args.phases)
        print_targets(target_rows(runs, args.phases))
        ok = all_writes_ok(runs)
        if not ok:
            print("\nSOME PHASE LOST OR DOUBLED A WRITE: see the lines marked WRONG above")
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
