"""The ledger's rollup for the console: attempts per minute, wait and run times, queue depth, per
queue and actor (table `job_stats`), and a snapshot of the jobs per state (`job_state_counts`).

`roll_up` is the maintenance job `ledger_stats` (every minute): it recounts the last few minutes
of attempts from the ledger (an attempt is written when it finishes, some a little late), samples
the queued jobs, folds the minutes into 15-minute and hourly buckets and drops old buckets. The
console reads a few hundred rows of it (`read_range`) instead of scanning the ledger.

Times are kept as histograms (HIST_BASE-spaced buckets of milliseconds), so percentiles of any
range are read from the sum of its buckets' histograms, within about a fifth of the true value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import zip_longest
from typing import Any, TypedDict

import psycopg

from workers import ledger_reads_sql

# Bucket lengths: a minute, 15 minutes, an hour.
GRAINS_S = (60, 900, 3600)
# How long each grain's buckets are kept.
KEEP = {60: timedelta(days=2), 900: timedelta(days=8), 3600: timedelta(days=35)}
# The console's ranges: (grain, span).
RANGES = {
    "1h": (60, timedelta(hours=1)),
    "24h": (900, timedelta(hours=24)),
    "7d": (3600, timedelta(days=7)),
}
# Histogram bucket i holds (HIST_BASE^(i-1), HIST_BASE^i] ms (the SQL in ledger_sql says the same).
HIST_BASE = 1.5
# Minutes recounted at each pass (attempts committed late, a pass that came late).
DEFAULT_RECOUNT = timedelta(minutes=5)
# A pass's minutes are written in chunks of this, each committed on its own.
DEFAULT_CHUNK = timedelta(hours=6)
# How far back the first pass reaches.
DEFAULT_BACKFILL = timedelta(days=7)
EPOCH = datetime(2000, 1, 1)

STATS_LAST_MINUTE = "SELECT max(bucket_at) FROM job_stats WHERE grain_s = 60"

# -- job_stats_upsert -- a bucket's counts and histograms; `depth` only when given (a sample).
STATS_UPSERT = """
INSERT INTO job_stats (grain_s, bucket_at, queue, actor, succeeded, failed, run_ms_hist, wait_ms_hist, depth)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (grain_s, bucket_at, queue, actor) DO UPDATE
   SET succeeded = EXCLUDED.succeeded, failed = EXCLUDED.failed, run_ms_hist = EXCLUDED.run_ms_hist,
       wait_ms_hist = EXCLUDED.wait_ms_hist, depth = coalesce(EXCLUDED.depth, job_stats.depth)
"""

# -- job_stats_depth -- the queued jobs sampled now, in the current minute's bucket.
STATS_DEPTH = """
INSERT INTO job_stats (grain_s, bucket_at, queue, actor, depth) VALUES (60, %s, %s, %s, %s)
ON CONFLICT (grain_s, bucket_at, queue, actor) DO UPDATE
   SET depth = greatest(job_stats.depth, EXCLUDED.depth)
"""

# -- job_stats_range -- one grain's buckets from `since` (the primary key).
STATS_RANGE = """
SELECT bucket_at, queue, actor, succeeded, failed, run_ms_hist, wait_ms_hist, depth
  FROM job_stats WHERE grain_s = %s AND bucket_at >= %s
"""

# -- job_stats_fold -- the minute buckets of a span, to be folded into coarser ones (the primary key).
STATS_FOLD = """
SELECT bucket_at, queue, actor, succeeded, failed, run_ms_hist, wait_ms_hist, depth
  FROM job_stats WHERE grain_s = 60 AND bucket_at >= %s AND bucket_at < %s
"""

STATS_PRUNE = "DELETE FROM job_stats WHERE grain_s = %s AND bucket_at < %s"

STATE_COUNTS_SAVE = """
INSERT INTO job_state_counts (state, jobs, counted_at) VALUES (%s, %s, %s)
ON CONFLICT (state) DO UPDATE SET jobs = EXCLUDED.jobs, counted_at = EXCLUDED.counted_at
"""
STATE_COUNTS_READ = "SELECT jobs, counted_at FROM job_state_counts WHERE state = %s"
STATE_COUNTS_CLEAR = "DELETE FROM job_state_counts"


def floor_to(at: datetime, grain_s: int) -> datetime:
    epoch = EPOCH.replace(tzinfo=at.tzinfo)
    return epoch + ((at - epoch) // timedelta(seconds=grain_s)) * timedelta(seconds=grain_s)


def add_hist(into: list[int], other: Iterable[int]) -> list[int]:
    for i, n in enumerate(other):
        if i < len(into):
            into[i] += n
        else:
            into.append(n)
    return into


def percentile_ms(hist: list[int], q: float) -> float | None:
    """The q-th quantile (0..1) of a histogram: its bucket's geometric middle, in ms."""
    total = sum(hist)
    if not total:
        return None
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen >= q * total:
            return 0.5 if i == 0 else HIST_BASE ** (i - 0.5)
    return HIST_BASE ** (len(hist) - 0.5)


@dataclass
class Bucket:
    succeeded: int = 0
    failed: int = 0
    run: list[int] = field(default_factory=list)
    wait: list[int] = field(default_factory=list)
    depth: int | None = None

    def add(self, other: Bucket) -> None:
        self.succeeded += other.succeeded
        self.failed += other.failed
        add_hist(self.run, other.run)
        add_hist(self.wait, other.wait)
        if other.depth is not None:
            self.depth = max(self.depth or 0, other.depth)


Key = tuple[datetime, str, str]  # bucket start, queue, actor


# ---- the maintenance pass ---------------------------------------------------------------------


def roll_up(conn: psycopg.Connection) -> dict[str, int]:
    """One pass; returns the buckets written per grain. The minutes since the last pass are done
    in chunks of DEFAULT_CHUNK, each committed on its own: a first pass over a large ledger that
    is cut short (time limit, restart) resumes where it stopped, it never starts over."""
    now = conn.execute("SELECT now()").fetchone()[0]
    last = conn.execute(STATS_LAST_MINUTE).fetchone()[0]
    since = floor_to(last - DEFAULT_RECOUNT, 60) if last else floor_to(now - DEFAULT_BACKFILL, 3600)
    written = dict.fromkeys(map(str, GRAINS_S), 0)
    while since <= now:
        until = min(since + DEFAULT_CHUNK, now + timedelta(seconds=60))
        with conn.transaction():
            written["60"] += _write(conn, 60, _minutes_from_ledger(conn, since, until))
            for grain in GRAINS_S[1:]:
                written[str(grain)] += _write(conn, grain, _fold(conn, grain, floor_to(since, grain), until))
        since = until
    with conn.transaction():
        _sample_depth(conn, floor_to(now, 60))
        for grain in GRAINS_S[1:]:  # the current buckets' depth
            _write(conn, grain, _fold(conn, grain, floor_to(now, grain), now + timedelta(seconds=60)))
        for grain, keep in KEEP.items():
            conn.execute(STATS_PRUNE, (grain, now - keep))
        _count_states(conn)
    return written


def _minutes_from_ledger(conn: psycopg.Connection, since: datetime, until: datetime) -> dict[Key, Bucket]:
    buckets: dict[Key, Bucket] = defaultdict(Bucket)
    params = {"since": since, "until": until}
    for at, queue, actor, ok, run_b, wait_b, n in conn.execute(ledger_reads_sql.ATTEMPT_STATS_SINCE, params):
        bucket = buckets[(at, queue, actor)]
        if ok:
            bucket.succeeded += n
        else:
            bucket.failed += n
        add_hist(bucket.run, [0] * run_b + [n])
        if wait_b is not None:
            add_hist(bucket.wait, [0] * wait_b + [n])
    return buckets


def _sample_depth(conn: psycopg.Connection, minute: datetime) -> None:
    rows = conn.execute(ledger_reads_sql.JOB_QUEUED_DEPTH).fetchall()
    with conn.cursor() as cur:
        cur.executemany(STATS_DEPTH, [(minute, queue, actor, n) for queue, actor, n in sorted(rows)])


def _fold(conn: psycopg.Connection, grain: int, start: datetime, until: datetime) -> dict[Key, Bucket]:
    """The minute buckets from `start` to `until` summed into buckets of `grain` seconds (whole
    buckets: `until` is rounded up to the grain)."""
    folded: dict[Key, Bucket] = defaultdict(Bucket)
    end = floor_to(until - timedelta(microseconds=1), grain) + timedelta(seconds=grain)
    for at, queue, actor, *values in conn.execute(STATS_FOLD, (start, end)):
        folded[(floor_to(at, grain), queue, actor)].add(Bucket(*values))
    return folded


def _write(conn: psycopg.Connection, grain: int, buckets: dict[Key, Bucket]) -> int:
    rows = [
        (grain, at, queue, actor, b.succeeded, b.failed, b.run, b.wait, b.depth)
        for (at, queue, actor), b in sorted(buckets.items())  # one order: concurrent passes never deadlock
    ]
    with conn.cursor() as cur:
        cur.executemany(STATS_UPSERT, rows)
    return len(rows)


def _count_states(conn: psycopg.Connection) -> None:
    rows = conn.execute(ledger_reads_sql.JOB_COUNT_BY_STATE_COUNTED).fetchall()
    conn.execute(STATE_COUNTS_CLEAR)
    with conn.cursor() as cur:
        cur.executemany(STATE_COUNTS_SAVE, rows)


# ---- the console's reads ------------------------------------------------------------------------


def state_counts(conn: psycopg.Connection, states: Iterable[str]) -> dict[str, int]:
    """Jobs per state, without a scan of the ledger: every state counted in its index but
    `succeeded`, which is the rollup's last count plus the jobs that succeeded since (rows deleted
    since then are still counted until the next pass)."""
    states = list(states)
    small = [s for s in states if s != "succeeded"]
    counts = dict(conn.execute(ledger_reads_sql.JOB_COUNT_STATES, {"states": small}).fetchall())
    if "succeeded" in states:
        snapshot = conn.execute(STATE_COUNTS_READ, ("succeeded",)).fetchone()
        if snapshot is None:
            counts["succeeded"] = conn.execute(
                ledger_reads_sql.JOB_COUNT_STATES, {"states": ["succeeded"]}
            ).fetchone()[1]
        else:
            since = {"since": snapshot[1], "state": "succeeded"}
            counts["succeeded"] = (
                snapshot[0] + conn.execute(ledger_reads_sql.JOB_COUNT_FINISHED_SINCE, since).fetchone()[0]
            )
    return {s: counts.get(s, 0) for s in states}


class Point(TypedDict):
    """One bucket of a range (or a range's figures for one queue or actor): attempts, percentiles
    of run and wait times in ms (None: no attempt), jobs queued."""

    at: datetime
    succeeded: int
    failed: int
    run_p50_ms: float | None
    run_p95_ms: float | None
    wait_p50_ms: float | None
    wait_p95_ms: float | None
    depth: int


class _Sums:
    """Rows of the rollup added up: counts at once, histograms kept and summed column by column at
    the end (zip_longest and sum run in C: a 7-day range is thousands of rows)."""

    __slots__ = ("depth", "failed", "runs", "succeeded", "waits")

    def __init__(self) -> None:
        self.succeeded = self.failed = self.depth = 0
        self.runs: list[list[int]] = []
        self.waits: list[list[int]] = []

    def add(self, succeeded: int, failed: int, run: list[int], wait: list[int], depth: int | None) -> None:
        self.succeeded += succeeded
        self.failed += failed
        self.runs.append(run)
        self.waits.append(wait)
        self.depth += depth or 0  # the queues' and actors' depths add up

    def point(self, at: datetime) -> Point:
        run = [sum(column) for column in zip_longest(*self.runs, fillvalue=0)]
        wait = [sum(column) for column in zip_longest(*self.waits, fillvalue=0)]
        return {
            "at": at,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "run_p50_ms": percentile_ms(run, 0.5),
            "run_p95_ms": percentile_ms(run, 0.95),
            "wait_p50_ms": percentile_ms(wait, 0.5),
            "wait_p95_ms": percentile_ms(wait, 0.95),
            "depth": self.depth,
        }


def read_range(
    conn: psycopg.Connection, range_key: str, queue: str | None = None, actor: str | None = None
) -> dict[str, Any]:
    """A range's points (every bucket, oldest first) for the jobs of `queue` and
    `actor` (None: all), and the range's totals per queue and per actor (all of them)."""
    grain, span = RANGES[range_key]
    now = conn.execute("SELECT now()").fetchone()[0]
    end = floor_to(now, grain) + timedelta(seconds=grain)
    start = end - span
    series: dict[datetime, _Sums] = defaultdict(_Sums)
    by_queue: dict[str, _Sums] = defaultdict(_Sums)
    by_actor: dict[str, _Sums] = defaultdict(_Sums)
    # Binary results: the histograms come as int arrays decoded in C, not text to parse.
    rows = conn.execute(STATS_RANGE, (grain, start), binary=True).fetchall()
    for at, q, a, ok, bad, run, wait, depth in rows:
        if (queue is None or q == queue) and (actor is None or a == actor):
            series[at].add(ok, bad, run, wait, depth)
        by_queue[q].add(ok, bad, run, wait, None)
        by_actor[a].add(ok, bad, run, wait, None)
    step = timedelta(seconds=grain)
    buckets = [start + step * i for i in range(int(span / step))]
    return {
        "range": range_key,
        "grain_s": grain,
        "start": start,
        "end": end,
        "points": [(series[at] if at in series else _Sums()).point(at) for at in buckets],
        "by_queue": {name: sums.point(start) for name, sums in sorted(by_queue.items())},
        "by_actor": {name: sums.point(start) for name, sums in sorted(by_actor.items())},
    }
