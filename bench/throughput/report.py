"""The throughput bench's tables: (a) against (b), the ledger's extras, and the targets."""

from __future__ import annotations

import math
from collections.abc import Callable

from bench.support.timing import fmt, percentile, rate
from bench.throughput.measure import LedgerExtras, PathResult

# The reference figure for bare Dramatiq's one-process enqueue rate on this machine.
REFERENCE_BARE_ENQUEUE_RATE = 2500.0
TARGET_RATIO = 0.6
TARGET_ENQUEUE_MANY_FACTOR = 2.0
TARGET_P99_MS = 5.0
# No-op burn-down (jobs already queued, workers started then), ledger / bare, at least.
TARGET_BURN_DOWN_RATIO = 2.0


def _ratio(a: float, b: float) -> float:
    return b / a if a and not math.isnan(a) and not math.isnan(b) else math.nan


Metric = tuple[str, Callable[[PathResult], float], int, bool]


def comparison_metrics(jobs: int) -> list[Metric]:
    """(label, value of a path's result, digits, show the ratio (b)/(a))."""

    def rate_of(attr: str) -> Callable[[PathResult], float]:
        return lambda r: rate(jobs, getattr(r, attr))

    def latency(attr: str, q: float) -> Callable[[PathResult], float]:
        return lambda r: percentile(getattr(r, attr), q)

    def rss_mib(fn: Callable[[list[int]], float]) -> Callable[[PathResult], float]:
        return lambda r: fn(r.peak_rss_kib) / 1024 if r.peak_rss_kib else math.nan

    return [
        ("enqueue, one process, one by one [jobs/s]", rate_of("enqueue_s"), 0, True),
        ("burn-down from worker spawn [jobs/s]", rate_of("burn_down_from_spawn_s"), 0, True),
        ("burn-down from first worker ready [jobs/s]", rate_of("burn_down_from_ready_s"), 0, True),
        ("end-to-end [jobs/s]", rate_of("end_to_end_s"), 0, True),
        ("worker boot, spawn to first ready [s]", lambda r: r.boot_s, 2, False),
        ("enqueue p50, no workers [ms]", latency("enqueue_latency_ms", 50), 3, False),
        ("enqueue p99, no workers [ms]", latency("enqueue_latency_ms", 99), 3, False),
        ("enqueue p50, during end-to-end [ms]", latency("end_to_end_latency_ms", 50), 3, False),
        ("enqueue p99, during end-to-end [ms]", latency("end_to_end_latency_ms", 99), 3, False),
        ("lone job to idle workers, wait p50 [ms]", latency("lone_wait_ms", 50), 1, False),
        ("lone job to idle workers, wait p99 [ms]", latency("lone_wait_ms", 99), 1, False),
        ("worker peak RSS, max per process [MiB]", rss_mib(max), 1, True),
        ("worker peak RSS, sum of processes [MiB]", rss_mib(sum), 1, True),
    ]


def print_comparison(jobs: int, a: PathResult, b: PathResult) -> None:
    print(f"\n{'N = ' + format(jobs, ','):<46} {'(a) bare':>12} {'(b) ledger':>12} {'(b)/(a)':>8}")
    for label, value, digits, with_ratio in comparison_metrics(jobs):
        va, vb = value(a), value(b)
        ratio = fmt(_ratio(va, vb), 2) if with_ratio else ""
        print(f"{label:<46} {fmt(va, digits):>12} {fmt(vb, digits):>12} {ratio:>8}")


def print_extras(extras: LedgerExtras) -> None:
    print("\n(b) ledger only")
    label = f"enqueue_many, batches of {extras.batch:,} [jobs/s]"
    print(f"{label:<46} {fmt(extras.enqueue_many_rate):>12}")
    for q in (50, 99):
        label = f"enqueue() with a dedup key, p{q} [ms]"
        print(f"{label:<46} {fmt(percentile(extras.dedup_latency_ms, q), 3):>12}")


Target = tuple[str, str, bool | None]


def target_rows(jobs: int, a: PathResult, b: PathResult, extras: LedgerExtras | None) -> list[Target]:
    """(target, measured, passed); passed is None when not measured."""
    rows: list[Target] = []
    for label, attr in (
        ("end-to-end", "end_to_end_s"),
        ("burn-down from spawn", "burn_down_from_spawn_s"),
        ("burn-down from ready", "burn_down_from_ready_s"),
    ):
        ratio = _ratio(rate(jobs, getattr(a, attr)), rate(jobs, getattr(b, attr)))
        rows.append(
            (
                f"{label} ratio (b)/(a) >= {TARGET_RATIO}",
                fmt(ratio, 2),
                _passed(ratio >= TARGET_RATIO, ratio),
            )
        )
    ratio = _ratio(rate(jobs, a.burn_down_from_ready_s), rate(jobs, b.burn_down_from_ready_s))
    label = f"burn-down from ready ratio (b)/(a) >= {TARGET_BURN_DOWN_RATIO:g}"
    rows.append((label, fmt(ratio, 2), _passed(ratio >= TARGET_BURN_DOWN_RATIO, ratio)))
    if extras is not None:
        rows.append(enqueue_many_target(rate(jobs, a.enqueue_s), extras.enqueue_many_rate))
        p99 = percentile(extras.dedup_latency_ms, 99)
        rows.append(
            (
                f"enqueue() p99 with a dedup key < {TARGET_P99_MS:g} ms",
                f"{p99:.2f} ms",
                _passed(p99 < TARGET_P99_MS, p99),
            )
        )
    return rows


def enqueue_many_target(bare_rate: float, many_rate: float) -> Target:
    """Against (a)'s measured one-process enqueue rate, or the issue's reference without (a)."""
    source = "reference" if math.isnan(bare_rate) else "(a)"
    bare_rate = REFERENCE_BARE_ENQUEUE_RATE if math.isnan(bare_rate) else bare_rate
    factor = many_rate / bare_rate
    label = f"enqueue_many >= {TARGET_ENQUEUE_MANY_FACTOR:g} x bare enqueue ({source}: {bare_rate:,.0f}/s)"
    return label, f"{factor:.2f} x", _passed(factor >= TARGET_ENQUEUE_MANY_FACTOR, factor)


def _passed(ok: bool, value: float) -> bool | None:
    return None if math.isnan(value) else ok


def print_targets(rows: list[Target]) -> None:
    print("\nTargets")
    for label, measured, passed in rows:
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[passed]
        print(f"  {label:<62} {measured:>10}  {verdict}")
