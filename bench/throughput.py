"""Throughput of the ledger path against bare Dramatiq: same Redis, same workers, same no-op actor.

    .venv/bin/python -m bench.throughput [--jobs 20000] [--processes 2] [--threads 8] [--skip-bare]

For each path, (a) bare Dramatiq `actor.send` and (b) `workers.enqueue` through the ledger:

  enqueue      N jobs one by one from this process, no worker running;
  burn-down    those N jobs, the workers started only then; timed from the workers' spawn, and
               from the moment the first worker process is ready (a Redis heartbeat of its broker
               for (a), its `workers` row for (b): after its consumers and, for (b), its relay
               started);
  end-to-end   workers running, N jobs enqueued one by one: first enqueue to last completion;

and, for the ledger path only, `enqueue_many` in batches, and the latency of `enqueue()` with a
dedup key. A job is complete when its message is acknowledged (a) or its row `succeeded` (b).
Each phase starts with an empty queue and no unfinished job in the ledger, which holds
`--history` finished jobs throughout (see HISTORY_ACTOR). The bench makes its own database and
Redis namespaces and removes them at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

REPO = Path(__file__).resolve().parent.parent
QUEUE = "default"
# The reference figure for bare Dramatiq's one-process enqueue rate on this machine.
REFERENCE_BARE_ENQUEUE_RATE = 2500.0
TARGET_RATIO = 0.6
TARGET_ENQUEUE_MANY_FACTOR = 2.0
TARGET_P99_MS = 5.0
# Server settings that change the ledger path's figures, printed with the machine facts.
PG_SETTINGS_SHOWN = ("synchronous_commit", "autovacuum", "shared_buffers")
# Completion polling: the shortest and the longest pause between two polls.
POLL_S = 0.05
MAX_POLL_S = 1.0
WARMUP_JOBS = 200


# Finished jobs the ledger holds before the bench starts, as retention keeps them in production.
# They keep the planner's statistics those of a ledger in use: on an empty, vacuumed `jobs` table
# (reltuples = 0) the workers' prepared statements get generic plans that scan whole indexes.
HISTORY_ACTOR = "bench_history"
SEED_HISTORY = """
INSERT INTO jobs (actor, queue, state, attempts, max_attempts, started_at, finished_at, worker_id,
                  enqueued_by)
SELECT %s, 'default', 'succeeded', 1, 1, now(), now(), 'bench', 'bench' FROM generate_series(1, %s)
"""


# ---- the two paths ----------------------------------------------------------------------------


class BenchPath(Protocol):
    key: str
    label: str
    env: dict[str, str]

    def worker_argv(self, processes: int, threads: int) -> list[str]: ...
    def send(self) -> None: ...
    def remaining(self, jobs: int) -> int: ...
    def progress(self) -> str: ...
    def ready_workers(self, since_epoch_s: float) -> int: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


class BarePath:
    """(a) `actor.send` on a plain RedisBroker; a job is done when its message is acknowledged."""

    key = "bare"
    label = "(a) bare"

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.env = {"REDIS_URL": redis_url, "BENCH_BARE_NAMESPACE": namespace}
        os.environ.update(self.env)
        from bench import bare_app

        self.broker = bare_app.broker
        self.actor = bare_app.bench_noop
        self.namespace = namespace
        self.redis = redis.Redis.from_url(redis_url)

    def worker_argv(self, processes: int, threads: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "dramatiq",
            "bench.bare_app:broker",
            "-p",
            str(processes),
            "-t",
            str(threads),
        ]

    def send(self) -> None:
        self.actor.send()

    def remaining(self, jobs: int) -> int:
        # A message stays in the queue's .msgs hash until it is acknowledged (after it ran).
        return self.redis.hlen(f"{self.namespace}:{QUEUE}.msgs")

    def progress(self) -> str:
        return f"{self.redis.hlen(f'{self.namespace}:{QUEUE}.msgs')} messages not acknowledged"

    def ready_workers(self, since_epoch_s: float) -> int:
        members = self.redis.zrangebyscore(f"{self.namespace}:__heartbeats__", since_epoch_s * 1000, "+inf")
        return sum(1 for m in members if m.decode() != self.broker.broker_id)

    def reset(self) -> None:
        self.broker.flush_all()

    def close(self) -> None:
        self.redis.close()


class LedgerPath:
    """(b) `workers.enqueue` writes a row; the relay in the workers publishes it; the ledger
    middleware moves it to running, then succeeded."""

    key = "ledger"
    label = "(b) ledger"

    def __init__(self, database_url: str, redis_url: str, namespace: str, history: int) -> None:
        self.env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SKYPORT_BROKER_NAMESPACE": namespace,
            "SKYPORT_EXTRA_MODULES": "bench.ledger_actors",
        }
        os.environ.update(self.env)
        import config

        config.get.cache_clear()
        import workers
        from bench import ledger_actors

        self.workers = workers
        self.actor = ledger_actors.bench_noop
        self.settings = config.get()
        self.monitor = psycopg.connect(database_url, autocommit=True)
        self.monitor.execute(SEED_HISTORY, (HISTORY_ACTOR, history))
        self.monitor.execute("VACUUM ANALYZE jobs, job_attempts")

    def worker_argv(self, processes: int, threads: int) -> list[str]:
        return [sys.executable, "-m", "workers.cli", "worker", "-p", str(processes), "-t", str(threads)]

    def send(self, dedup_key: str | None = None) -> None:
        self.workers.enqueue(self.actor, dedup_key=dedup_key)

    def send_many(self, count: int) -> None:
        self.workers.enqueue_many([self.workers.JobSpec(self.actor)] * count)

    def _scalar(self, query: str) -> int:
        return self.monitor.execute(query).fetchone()[0]

    def remaining(self, jobs: int) -> int:
        query = "SELECT count(*) FROM jobs WHERE actor = %s AND state = 'succeeded'"
        return jobs - self.monitor.execute(query, (self.actor.actor_name,)).fetchone()[0]

    def progress(self) -> str:
        rows = self.monitor.execute("SELECT state, count(*) FROM jobs GROUP BY state ORDER BY 1").fetchall()
        return ", ".join(f"{state}: {count}" for state, count in rows)

    def ready_workers(self, since_epoch_s: float) -> int:
        return self._scalar("SELECT count(*) FROM workers")

    def reset(self) -> None:
        """The bench's jobs go (their attempts with them); VACUUM, as autovacuum would."""
        self.monitor.execute("DELETE FROM jobs WHERE actor <> %s", (HISTORY_ACTOR,))
        self.monitor.execute("VACUUM jobs, job_attempts")

    def close(self) -> None:
        from db import pool

        pool.close()
        self.monitor.close()


# ---- worker processes -------------------------------------------------------------------------


class Workers:
    """A worker command in a process group of its own, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.spawned_epoch_s = 0.0
        self.spawned_at = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.spawned_epoch_s, self.spawned_at = time.time(), time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"workers exited with {self.proc.returncode}:\n{self.log_tail()}")

    def peak_rss_kib(self) -> list[int]:
        """VmHWM of each worker process (the children of the main process)."""
        return (
            [_kib_field(f"/proc/{pid}/status", "VmHWM") for pid in _children(self.proc.pid)]
            if self.proc
            else []
        )

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the group (a graceful shutdown), SIGKILL to whatever is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name (field 2) may hold spaces; the parent pid follows its ')'.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _kib_field(path: str, field_name: str) -> int:
    """A `Name:   1234 kB` field of a /proc file."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return 0


# ---- measurements -----------------------------------------------------------------------------


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


@dataclass
class LedgerExtras:
    batch: int
    enqueue_many_rate: float = math.nan
    dedup_latency_ms: list[float] = field(default_factory=list)


def timed_calls(call: Callable[[int], Any], count: int) -> tuple[float, list[float]]:
    """Call `call(i)` for i in range(count); the total seconds and each call's milliseconds."""
    latencies = []
    started = time.perf_counter()
    for i in range(count):
        before = time.perf_counter()
        call(i)
        latencies.append((time.perf_counter() - before) * 1000)
    return time.perf_counter() - started, latencies


def wait_until_complete(path: BenchPath, jobs: int, deadline: float, on_tick: Callable[[], None]) -> float:
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
    extras.enqueue_many_rate = _rate(batches * args.batch, seconds)
    path.reset()
    print(f"(b) ledger: enqueue() latency with a dedup key, {args.latency_samples} samples ...", flush=True)
    _, extras.dedup_latency_ms = timed_calls(lambda i: path.send(f"bench-{i}"), args.latency_samples)
    path.reset()
    return extras


# ---- report -----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def _fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _ratio(a: float, b: float) -> float:
    return b / a if a and not math.isnan(a) and not math.isnan(b) else math.nan


def _rate(jobs: int, seconds: float) -> float:
    return jobs / seconds if seconds and not math.isnan(seconds) else math.nan


Metric = tuple[str, Callable[[PathResult], float], int, bool]


def comparison_metrics(jobs: int) -> list[Metric]:
    """(label, value of a path's result, digits, show the ratio (b)/(a))."""

    def rate(attr: str) -> Callable[[PathResult], float]:
        return lambda r: _rate(jobs, getattr(r, attr))

    def latency(attr: str, q: float) -> Callable[[PathResult], float]:
        return lambda r: percentile(getattr(r, attr), q)

    def rss_mib(fn: Callable[[list[int]], float]) -> Callable[[PathResult], float]:
        return lambda r: fn(r.peak_rss_kib) / 1024 if r.peak_rss_kib else math.nan

    return [
        ("enqueue, one process, one by one [jobs/s]", rate("enqueue_s"), 0, True),
        ("burn-down from worker spawn [jobs/s]", rate("burn_down_from_spawn_s"), 0, True),
        ("burn-down from first worker ready [jobs/s]", rate("burn_down_from_ready_s"), 0, True),
        ("end-to-end [jobs/s]", rate("end_to_end_s"), 0, True),
        ("worker boot, spawn to first ready [s]", lambda r: r.boot_s, 2, False),
        ("enqueue p50, no workers [ms]", latency("enqueue_latency_ms", 50), 3, False),
        ("enqueue p99, no workers [ms]", latency("enqueue_latency_ms", 99), 3, False),
        ("enqueue p50, during end-to-end [ms]", latency("end_to_end_latency_ms", 50), 3, False),
        ("enqueue p99, during end-to-end [ms]", latency("end_to_end_latency_ms", 99), 3, False),
        ("worker peak RSS, max per process [MiB]", rss_mib(max), 1, True),
        ("worker peak RSS, sum of processes [MiB]", rss_mib(sum), 1, True),
    ]


def print_comparison(jobs: int, a: PathResult, b: PathResult) -> None:
    print(f"\n{'N = ' + format(jobs, ','):<46} {'(a) bare':>12} {'(b) ledger':>12} {'(b)/(a)':>8}")
    for label, value, digits, with_ratio in comparison_metrics(jobs):
        va, vb = value(a), value(b)
        ratio = _fmt(_ratio(va, vb), 2) if with_ratio else ""
        print(f"{label:<46} {_fmt(va, digits):>12} {_fmt(vb, digits):>12} {ratio:>8}")


def print_extras(extras: LedgerExtras) -> None:
    print("\n(b) ledger only")
    label = f"enqueue_many, batches of {extras.batch:,} [jobs/s]"
    print(f"{label:<46} {_fmt(extras.enqueue_many_rate):>12}")
    for q in (50, 99):
        label = f"enqueue() with a dedup key, p{q} [ms]"
        print(f"{label:<46} {_fmt(percentile(extras.dedup_latency_ms, q), 3):>12}")


Target = tuple[str, str, bool | None]


def target_rows(jobs: int, a: PathResult, b: PathResult, extras: LedgerExtras | None) -> list[Target]:
    """(target, measured, passed); passed is None when not measured."""
    rows: list[Target] = []
    for label, attr in (
        ("end-to-end", "end_to_end_s"),
        ("burn-down from spawn", "burn_down_from_spawn_s"),
        ("burn-down from ready", "burn_down_from_ready_s"),
    ):
        ratio = _ratio(_rate(jobs, getattr(a, attr)), _rate(jobs, getattr(b, attr)))
        rows.append(
            (
                f"{label} ratio (b)/(a) >= {TARGET_RATIO}",
                _fmt(ratio, 2),
                _passed(ratio >= TARGET_RATIO, ratio),
            )
        )
    if extras is not None:
        rows.append(enqueue_many_target(_rate(jobs, a.enqueue_s), extras.enqueue_many_rate))
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


# ---- machine, database, Redis -----------------------------------------------------------------


def machine_facts(database_url: str, redis_url: str) -> dict[str, str]:
    import dramatiq

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?"
    )
    mem_kib = _kib_field("/proc/meminfo", "MemTotal")
    with psycopg.connect(database_url, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        pg_settings = ", ".join(
            f"{name}={conn.execute(sql.SQL('SHOW {}').format(sql.Identifier(name))).fetchone()[0]}"
            for name in PG_SETTINGS_SHOWN
        )
    redis_version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "postgresql": f"{pg_version} ({pg_settings})",
        "redis": redis_version,
        "python": platform.python_version(),
        "dramatiq": dramatiq.__version__,
        "psycopg": psycopg.__version__,
        "code": _code_version(),
    }


def _code_version() -> str:
    """The commit, and whether the runtime (workers/, db/) differs from it in the working tree."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "workers", "db"], capture_output=True).stdout
    return f"{commit.strip() or '?'}{' + uncommitted changes in workers/ or db/' if dirty else ''}"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _with_dbname(database_url: str, dbname: str) -> str:
    """The same server URL, naming another database."""
    return urlunsplit(urlsplit(database_url)._replace(path=f"/{dbname}"))


@contextlib.contextmanager
def bench_database(base_url: str, name: str) -> Iterator[str]:
    """A fresh database, migrated to the newest schema; dropped on the way out."""
    from db import migrate

    with fresh_database(base_url, name, lambda url: migrate.upgrade(database_url=url)) as url:  # every head
        yield url


@contextlib.contextmanager
def fresh_database(base_url: str, name: str, set_up: Callable[[str], object]) -> Iterator[str]:
    """A new database `name` on the server of `base_url`, `set_up(url)` run on it; dropped on the
    way out."""
    admin_url = _with_dbname(base_url, "postgres")
    url = _with_dbname(base_url, name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        set_up(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@contextlib.contextmanager
def redis_namespaces(redis_url: str, *namespaces: str) -> Iterator[None]:
    """Delete every key of the namespaces on the way out (never anything else)."""
    try:
        yield
    finally:
        client = redis.Redis.from_url(redis_url)
        for namespace in namespaces:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
        client.close()


# ---- main -------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", "-n", type=int, default=20_000, help="jobs per phase (default: %(default)s)")
    p.add_argument("--processes", "-p", type=int, default=2, help="worker processes (default: %(default)s)")
    p.add_argument("--threads", "-t", type=int, default=8, help="threads per process (default: %(default)s)")
    p.add_argument("--batch", type=int, default=1000, help="enqueue_many batch size (default: %(default)s)")
    p.add_argument("--latency-samples", type=int, default=2000, help="enqueue() latency samples")
    p.add_argument("--skip-bare", action="store_true", help="run the ledger path only")
    p.add_argument("--skip-extras", action="store_true", help="skip enqueue_many and the latency run")
    p.add_argument(
        "--history",
        type=int,
        default=20_000,
        help="finished jobs in the ledger before the bench starts (default: %(default)s)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a phase may take at most")
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="server to use (the bench creates and drops a database of its own there)",
    )
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    p.add_argument("--keep-logs", action="store_true", help="keep the workers' logs")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # SIGTERM cleans up like Ctrl-C: workers stopped, database dropped, Redis keys deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tag = secrets.token_hex(4)
    bare_ns, ledger_ns = f"skyport_bench_{tag}_bare", f"skyport_bench_{tag}_ledger"
    log_dir = Path(tempfile.mkdtemp(prefix="skyport-bench-"))
    load_before = _load()
    print(f"skyport bench {tag}: {' '.join(sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before: {load_before}")
    ok = False
    try:
        with (
            redis_namespaces(args.redis_url, bare_ns, ledger_ns),
            bench_database(args.database_url, f"skyport_bench_{tag}") as database_url,
        ):
            for name, value in machine_facts(database_url, args.redis_url).items():
                print(f"  {name:<14} {value}")
            print(
                f"  jobs {args.jobs:,}; workers -p {args.processes} -t {args.threads}; "
                f"ledger history: {args.history:,} finished jobs; logs in {log_dir}\n"
            )
            run(args, database_url, bare_ns, ledger_ns, log_dir)
        ok = True
    finally:
        finish_run(log_dir, keep=not ok or args.keep_logs, load_before=load_before)
    return 0


def finish_run(log_dir: Path, *, keep: bool, load_before: str) -> None:
    """The end of a bench run: the load it left, and its logs removed unless kept."""
    print(f"\nload average after: {_load()} (before: {load_before})")
    if keep:
        print(f"logs kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)


def run(args: argparse.Namespace, database_url: str, bare_ns: str, ledger_ns: str, log_dir: Path) -> None:
    bare_result = PathResult()
    if not args.skip_bare:
        bare = BarePath(args.redis_url, bare_ns)
        try:
            bare_result = measure_path(bare, args, log_dir)
        finally:
            bare.close()
    ledger = LedgerPath(database_url, args.redis_url, ledger_ns, args.history)
    try:
        ledger_result = measure_path(ledger, args, log_dir)
        extras = None if args.skip_extras else measure_ledger_extras(ledger, args)
    finally:
        ledger.close()
    print_comparison(args.jobs, bare_result, ledger_result)
    if extras is not None:
        print_extras(extras)
    print_targets(target_rows(args.jobs, bare_result, ledger_result, extras))
    cfg = ledger.settings
    print(
        "\nburn-down: 'from spawn' includes the workers' boot; 'from first worker ready' starts when the"
        "\nfirst worker process registered (Redis heartbeat for (a), `workers` row for (b): consumers and"
        f"\nrelay running). Relay batch {cfg.worker.relay_batch}, relay sweep {cfg.worker.relay_sweep_s:g} s."
    )


if __name__ == "__main__":
    sys.exit(main())
