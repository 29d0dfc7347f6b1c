"""The throughput bench's phases on one path: enqueue, burn-down, end-to-end, and the ledger's
extras (`enqueue_many`, the latency of `enqueue()` with a dedup key, a lone job's wait)."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.support.procs import Workers
from bench.support.timing import rate, timed_calls, wait_until_complete
from bench.throughput.paths import BenchPath, LedgerPath

WARMUP_JOBS = 200
# Lone jobs are enqueued this far apart, so that every consumer is idle when one comes.
LONE_JOB_GAP_S = 0.3


@dataclass
class PathResult:
    enqueue_s: float = math.nan
    enqueue_latency_ms: list[float] = field(default_factory=list)
    boot_s: float = math.nan
    burn_down_from_spawn_s: float = math.nan
    burn_down_from_ready_s: float = math.nan
    end_to_end_s: float = math.nan
    end_to_end_latency_ms: list[float] = field(default_factory=list)
    peak_rss_kib: list[int] = field(default_factory=list)
    lone_wait_ms: list[float] = field(default_factory=list)  # the ledger's only: commit to claim


@dataclass
class LedgerExtras:
    batch: int
    enqueue_many_rate: float = math.nan
    dedup_latency_ms: list[float] = field(default_factory=list)


def warm_up(path: BenchPath) -> None:
    """Connections, imports and the first statements, before anything is timed."""
    timed_calls(lambda _: path.send(), WARMUP_JOBS)
    path.reset()


def measure_path(path: BenchPath, args: argparse.Namespace, log_dir: Path) -> PathResult:
    result = PathResult()
    warm_up(path)
    print(f"{path.label}: enqueue {args.jobs} jobs one by one, no workers ...", flush=True)
    result.enqueue_s, result.enqueue_latency_ms = timed_calls(lambda _: path.send(), args.jobs)
    workers = Workers(
        path.worker_argv(args.processes, args.threads), path.env, log_dir / f"{path.key}-workers.log"
    )
    try:
        print(f"{path.label}: burn-down (workers started now) ...", flush=True)
        measure_burn_down(path, workers, args, result)
        path.reset()
        print(f"{path.label}: end-to-end (workers running) ...", flush=True)
        started = time.monotonic()
        _, result.end_to_end_latency_ms = timed_calls(lambda _: path.send(), args.jobs)
        finished = wait_until_complete(path, args.jobs, started + args.timeout, workers.check_alive)
        result.end_to_end_s = finished - started
        result.peak_rss_kib = workers.peak_rss_kib()
        if isinstance(path, LedgerPath) and args.lone_jobs:
            print(f"{path.label}: {args.lone_jobs} lone jobs to idle workers ...", flush=True)
            result.lone_wait_ms = path.lone_job_waits_ms(args.lone_jobs, LONE_JOB_GAP_S)
    finally:
        workers.stop()
    path.reset()
    return result


def measure_burn_down(
    path: BenchPath, workers: Workers, args: argparse.Namespace, result: PathResult
) -> None:
    ready_at: list[float] = []

    def on_tick() -> None:
        workers.check_alive()
        if not ready_at and path.ready_workers(workers.spawned_epoch_s) > 0:
            ready_at.append(time.monotonic())

    workers.start()
    finished = wait_until_complete(path, args.jobs, workers.spawned_at + args.timeout, on_tick)
    ready = ready_at[0] if ready_at else finished
    result.boot_s = ready - workers.spawned_at
    result.burn_down_from_spawn_s = finished - workers.spawned_at
    result.burn_down_from_ready_s = finished - ready


def measure_ledger_extras(path: LedgerPath, args: argparse.Namespace) -> LedgerExtras:
    extras = LedgerExtras(args.batch)
    batches = math.ceil(args.jobs / args.batch)
    print(f"(b) ledger: enqueue_many, {batches} batches of {args.batch} ...", flush=True)
    seconds, _ = timed_calls(lambda _: path.send_many(args.batch), batches)
    extras.enqueue_many_rate = rate(batches * args.batch, seconds)
    path.reset()
    print(f"(b) ledger: enqueue() latency with a dedup key, {args.latency_samples} samples ...", flush=True)
    _, extras.dedup_latency_ms = timed_calls(lambda i: path.send(f"bench-{i}"), args.latency_samples)
    path.reset()
    return extras
