"""Timing a bench's calls, waiting for its jobs to complete, and the figures' arithmetic."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, Protocol

# Completion polling: the shortest and the longest pause between two polls.
POLL_S = 0.05
MAX_POLL_S = 1.0


class Completing(Protocol):
    """Something whose jobs complete: a throughput path, a peers system."""

    label: str

    def remaining(self, jobs: int) -> int: ...
    def progress(self) -> str: ...


def timed_calls(call: Callable[[int], Any], count: int) -> tuple[float, list[float]]:
    """Call `call(i)` for i in range(count); the total seconds and each call's milliseconds."""
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        before = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - before) * 1000)
    return time.perf_counter() - started, latencies


def wait_until_complete(path: Completing, jobs: int, deadline: float, on_tick: Callable[[], None]) -> float:
    """Poll until the path has completed `jobs` jobs; returns the monotonic time it saw that.

    Counting the ledger's rows costs the database a few ms, so once the rate is known the pause
    between polls is a quarter of the expected time left (at most MAX_POLL_S, at least POLL_S)."""
    base: tuple[float, int] | None = None  # the first poll that saw jobs done
    while True:
        on_tick()
        now, remaining = time.monotonic(), path.remaining(jobs)
        if remaining <= 0:
            return now
        if now > deadline:
            raise TimeoutError(f"{path.label}: not complete at the deadline ({path.progress()})")
        if base is None and remaining < jobs:
            base = (now, remaining)
        time.sleep(_next_poll_s(base, now, remaining, jobs))


def _next_poll_s(base: tuple[float, int] | None, now: float, remaining: int, jobs: int) -> float:
    done = base[1] - remaining if base else 0
    if base is None or done < jobs * 0.05 or now <= base[0]:
        return POLL_S
    time_left = remaining * (now - base[0]) / done
    return min(MAX_POLL_S, max(POLL_S, time_left / 4))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def rate(jobs: int, seconds: float) -> float:
    return jobs / seconds if seconds and not math.isnan(seconds) else math.nan
