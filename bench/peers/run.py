"""Running one system of the peers bench: its worker group, its phases, CPU per job by role."""

from __future__ import annotations

import argparse
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bench.peers.systems import Setting, System, log_path
from bench.support.cpu import ROLES, CpuMeter
from bench.support.procs import Workers
from bench.support.timing import fmt, percentile, rate, timed_calls, wait_until_complete

PHASES = ("one", "threads", "batch")
PHASE_LABELS = {"one": "one by one", "threads": "16 threads", "batch": "batched"}
# Jobs run through a system's fresh workers before any phase is timed (imports, connections,
# prepared statements), then cleared.
WARMUP_JOBS = 200


@dataclass
class PhaseResult:
    jobs: int
    enqueue_s: float = math.nan
    end_to_end_s: float = math.nan
    writes: int = 0
    distinct_writes: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # CPU ms per job, by role
    call_ms: list[float] = field(default_factory=list)  # each enqueue call (one by one)

    @property
    def call_p50_ms(self) -> float:
        return percentile(self.call_ms, 50)

    @property
    def enqueue_rate(self) -> float:
        return rate(self.jobs, self.enqueue_s)

    @property
    def end_to_end_rate(self) -> float:
        return rate(self.jobs, self.end_to_end_s)

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
        _, result.call_ms = timed_calls(lambda i: system.send_one(numbers[i]), jobs)
    elif phase == "threads":  # each thread enqueues its share one call at a time, as request threads do
        shares = [numbers[t :: args.enqueue_threads] for t in range(args.enqueue_threads)]
        with ThreadPoolExecutor(args.enqueue_threads) as threads:
            for done in [threads.submit(_send_each, system, share) for share in shares]:
                done.result()
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


def _send_each(system: System, numbers: list[int]) -> None:
    for n in numbers:
        system.send_one(n)


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
            p50 = f"; enqueue call p50 {outcome.call_p50_ms:.3f} ms" if outcome.call_ms else ""
            print(
                f"  {PHASE_LABELS[phase]:<11} enqueue {fmt(outcome.enqueue_rate):>7} jobs/s, "
                f"end-to-end {fmt(outcome.end_to_end_rate):>7} jobs/s ({outcome.end_to_end_s:.2f} s), "
                f"writes {outcome.writes:,} ({outcome.distinct_writes:,} distinct)"
                f"{'' if outcome.writes_ok else '  <-- WRONG'}\n"
                f"  {'':<11} CPU ms per job: {cpu}; total {outcome.cpu_total_ms:.2f}{p50}",
                flush=True,
            )
    finally:
        group.stop()
    system.reset()
    return run
