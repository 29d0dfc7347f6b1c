"""A consumer's prefetch follows the pace of its acks (workers/consumer.py, PrefetchPace)."""

from __future__ import annotations

from workers.consumer import CLAIMED_WORK_S, PACE_WINDOW_S, PrefetchPace


def _window(pace: PrefetchPace, now: float, acks: int) -> tuple[float, int]:
    pace.acks += acks
    now += PACE_WINDOW_S
    return now, pace.update(now)


def test_the_prefetch_grows_with_short_jobs_up_to_its_most_and_falls_back_when_they_slow() -> None:
    pace = PrefetchPace(base=32, most=128, now=0.0)
    assert pace.update(PACE_WINDOW_S / 2) == 32  # not a whole window yet
    per_window = int(PACE_WINDOW_S * 64 / CLAIMED_WORK_S)  # 64 jobs' work in CLAIMED_WORK_S
    now, prefetch = _window(pace, 0.0, per_window)
    assert prefetch == 64
    now, prefetch = _window(pace, now, per_window * 10)
    assert prefetch == 128  # never more than its most
    now, prefetch = _window(pace, now, 3)
    assert prefetch == 32  # long jobs: the base again
