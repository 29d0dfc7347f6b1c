"""The capacity bench's tables: per job for each window, Redis per queued message, the idle cost."""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from bench.capacity.cpu import BACKENDS, PG_WORKERS
from bench.capacity.pgstats import COUNTERS, STORED
from bench.capacity.redis_memory import RedisFigures
from bench.capacity.scenario import Measured, Prune, Window
from bench.support.cpu import ROLES
from bench.support.timing import fmt

LABEL = 52
COLUMN = 13
MODES = {"one": "one by one", "batch": "batched"}
PG_PARTS = (*BACKENDS, PG_WORKERS)
CPU_ROWS = ("enqueuer", "workers", "postgres", *PG_PARTS, "redis")


def _nan_if_none(fn: Callable[[Window], float | None]) -> Callable[[Window], float]:
    def value(w: Window) -> float:
        try:
            v = fn(w)
        except (AttributeError, TypeError, KeyError, ZeroDivisionError):
            return math.nan
        return math.nan if v is None else v

    return value


def _rows_of(table: str, counter: str) -> Callable[[Window], float]:
    i = COUNTERS.index(counter)
    return _nan_if_none(lambda w: w.per_job(w.counts.tables[table][i]))


def _stored(attr: str, part: int | None = None) -> Callable[[Window], float]:
    def value(w: Window) -> float:
        after, before = getattr(w, attr), w.stored_before
        if part is None:
            return w.per_job(after.total() - before.total())
        return w.per_job(after.part(part) - before.part(part))

    return _nan_if_none(value)


def _all_writes(w: Window) -> float:
    return w.per_job(sum(v[0] + v[1] + v[3] for v in w.counts.tables.values()))


def _cpu_total(w: Window) -> float:
    return w.per_job(sum(w.run.cpu_s.get(r, 0.0) for r in ROLES) * 1000)


Figure = tuple[str, Callable[[Window], float], int]


def figures() -> list[Figure]:
    """(label, value per job, digits)."""
    rows: list[Figure] = [
        ("end to end, first enqueue to last done [jobs/s]", lambda w: w.jobs / w.run.seconds, 0),
        ("WAL of this database [B/job] (pg_waldump)", _nan_if_none(lambda w: w.per_job(w.run.wal.bytes)), 0),
        ("  of which full-page images [B/job]", _nan_if_none(lambda w: w.per_job(w.run.wal.fpi_bytes)), 0),
        (
            "  without full-page images [B/job]",
            _nan_if_none(lambda w: w.per_job(w.run.wal.bytes - w.run.wal.fpi_bytes)),
            0,
        ),
        ("  WAL records [/job]", _nan_if_none(lambda w: w.per_job(w.run.wal.records)), 1),
        ("  commits that wrote WAL [/job]", _nan_if_none(lambda w: w.per_job(w.run.wal.commits)), 3),
        ("WAL, server-wide LSN difference [B/job]", lambda w: w.per_job(w.run.lsn_bytes), 0),
        (
            "WAL syncs, server-wide (pg_stat_wal) [/job]",
            _nan_if_none(lambda w: w.per_job(w.counts.wal[4])),
            3,
        ),
        (
            "transactions committed, incl. read-only [/job]",
            _nan_if_none(lambda w: w.per_job(w.counts.database[0])),
            2,
        ),
    ]
    for table, counters in (
        ("jobs", ("ins", "upd", "hot", "del")),
        ("job_attempts", ("ins", "upd", "hot", "del")),
        ("workers", ("upd",)),
        ("bench_writes", ("ins",)),
    ):
        for counter in counters:
            rows.append((f"row writes: {table} {counter} [/job]", _rows_of(table, counter), 3))
    rows += [
        ("row writes, all tables: ins + upd + del [/job]", _nan_if_none(_all_writes), 2),
        (f"stored, {' + '.join(STORED)} as written [B/job]", _stored("stored_written"), 0),
        ("  heap, as written [B/job]", _stored("stored_written", 0), 0),
        ("  indexes, as written [B/job]", _stored("stored_written", 1), 0),
        ("stored, after VACUUM FULL (live rows) [B/job]", _stored("stored_live"), 0),
        ("  heap, live [B/job]", _stored("stored_live", 0), 0),
        ("  indexes, live [B/job]", _stored("stored_live", 1), 0),
    ]
    for role in CPU_ROWS:
        label = f"  of which {role} backends [ms/job]" if role in PG_PARTS else f"CPU {role} [ms/job]"
        rows.append((label, _nan_if_none(lambda w, r=role: w.per_job(w.run.cpu_s[r] * 1000)), 3))
    cores = os.cpu_count() or 1
    rows += [
        ("CPU, all roles [ms/job]", _cpu_total, 3),
        (
            f"CPU cap on {cores} cores: {cores} x 1000 / total [jobs/s]",
            lambda w: cores * 1000 / _cpu_total(w),
            0,
        ),
    ]
    return rows


def print_windows(windows: list[Window]) -> None:
    heads = [f"{w.kind}/{w.mode}" for w in windows]
    print(
        f"\n{'per job, N = ' + format(windows[0].jobs, ','):<{LABEL}}"
        + "".join(f"{h:>{COLUMN}}" for h in heads)
    )
    for label, value, digits in figures():
        cells = "".join(f"{fmt(value(w), digits):>{COLUMN}}" for w in windows)
        print(f"{label:<{LABEL}}{cells}")
    print(
        "  one = enqueue() per job; batch = enqueue_many() batches. WAL of this database: the records of"
        "\n  the bench's database only (its transactions, with their COMMIT records); the LSN difference and"
        "\n  pg_stat_wal count every database of the server. CPU: the bench process (enqueuer, and its"
        "\n  completion polls), the worker processes, the bench database's PostgreSQL backends, the Redis"
        "\n  server (shared with anything else using it)."
    )


def print_redis(figs: list[RedisFigures]) -> None:
    print(
        f"\n{'Redis, per queued message (no worker running)':<{LABEL}}"
        + "".join(f"{f.kind:>{COLUMN}}" for f in figs)
    )
    for label, attr in (
        ("message body, encoded [B]", "body_bytes"),
        ("queue list + message hash (MEMORY USAGE) [B]", "key_bytes"),
        ("used_memory difference, server-wide [B]", "used_memory_bytes"),
    ):
        print(f"{label:<{LABEL}}" + "".join(f"{fmt(getattr(f, attr)):>{COLUMN}}" for f in figs))
    print(f"  {figs[0].messages:,} messages each.")


def print_idle(idle: Measured, processes: int) -> None:
    cells = ", ".join(
        f"{role} {fmt(idle.cpu_s.get(role, math.nan) * 1000 / idle.seconds, 1)}"
        for role in ROLES
        if role != "enqueuer"
    )
    wal = fmt(idle.wal.bytes / idle.seconds) if idle.wal else "-"
    print(
        f"\nIdle ({processes} worker processes running, no job, {idle.seconds:.1f} s):"
        f" CPU ms per second: {cells};"
        f" WAL of this database {wal} B/s"
    )


def print_prune(p: Prune) -> None:
    title = f"prune_finished of {p.jobs:,} finished jobs, then VACUUM"
    print(f"\n{title:<{LABEL}}{'DELETE':>{COLUMN}}{'VACUUM':>{COLUMN}}")
    rows: list[tuple[str, Callable[[Measured], float], int]] = [
        ("seconds", lambda m: m.seconds, 2),
        ("jobs per second", lambda m: p.jobs / m.seconds, 0),
        ("WAL of this database [B/job]", lambda m: m.wal.bytes / p.jobs, 0),
        ("  of which full-page images [B/job]", lambda m: m.wal.fpi_bytes / p.jobs, 0),
        ("PostgreSQL backend CPU [ms/job]", lambda m: m.cpu_s["postgres"] * 1000 / p.jobs, 4),
    ]
    for label, value, digits in rows:
        cells = "".join(f"{fmt(_nan_if_none(value)(m), digits):>{COLUMN}}" for m in (p.delete, p.vacuum))
        print(f"{label:<{LABEL}}{cells}")
