"""The four systems of the peers bench, each on a database of its own, behind one small interface.

  bare           Dramatiq `actor.send` on a plain RedisBroker (bare_actors.py)
  ledger         Skyport: `workers.enqueue` / `enqueue_many` + `skyport worker` (ledger_actors.py)
  procrastinate  `task.defer` / `task.batch_defer` + `procrastinate worker` (procrastinate_app.py)
  pgqueuer       `SyncQueries.enqueue` (one job, or lists) + `pgqueuer.run` (pgqueuer_app.py)

A `Setting` is one way to run a system's workers; each system lists its documented defaults,
its tuned setting (the best found by `python -m bench.peers --sweep`) and the candidates the
sweep tries. Every system runs 2 worker processes (`--processes`); within a process the
concurrency is each library's own knob (threads, concurrency, batch size).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import psycopg
from psycopg import sql

from bench.peers.write import BENCH_WRITES_COUNT, BENCH_WRITES_CREATE, DATABASE_URL_ENV
from bench.support.databases import fresh_database
from bench.support.procs import REPO
from bench.throughput.paths import BarePath, LedgerPath


@dataclass(frozen=True)
class Setting:
    """One way to run a system's workers: a name, what it is, and the knobs it sets."""

    name: str
    summary: str
    params: dict[str, int | str] = field(default_factory=dict)


# Dramatiq's own defaults are processes = CPUs (2 here) and 8 threads; Skyport's are the same.
BARE_DEFAULT = Setting("default", "dramatiq -p 2 -t 8 (Dramatiq's defaults on 2 CPUs)", {"threads": 8})
BARE_TUNED = Setting("tuned", "dramatiq -p 2 -t 8 (the default: -t 4, 16, 32 did no better)", {"threads": 8})
BARE_CANDIDATES = tuple(Setting(f"threads {t}", f"dramatiq -p 2 -t {t}", {"threads": t}) for t in (4, 16, 32))
LEDGER_DEFAULT = Setting("default", "skyport worker -p 2 -t 8 (Skyport's defaults)", {"threads": 8})

# procrastinate: concurrency 1 per worker (its documented default) on psycopg_pool's default 4
# connections, logging at INFO (its CLI's default: two lines per job). Tuned: concurrency 8, the
# best of the sweep (docs/benchmarks.md): 4 did about as well, 16 and 32 worse; a larger pool or
# logging only warnings made no difference beyond the run-to-run noise at concurrency 8.
PROCRASTINATE_DEFAULT = Setting(
    "default", "2 x procrastinate worker, concurrency 1, pool 4, log INFO (its defaults)", {"concurrency": 1}
)
PROCRASTINATE_TUNED = Setting(
    "tuned", "2 x procrastinate worker, concurrency 8 (pool 4, log INFO: defaults)", {"concurrency": 8}
)
PROCRASTINATE_CANDIDATES = (
    Setting("log warning", "concurrency 1, pool 4, log WARNING", {"concurrency": 1, "log_level": "warning"}),
    Setting("c8", "concurrency 8, pool 4", {"concurrency": 8}),
    Setting("c8 pool10", "concurrency 8, pool 10", {"concurrency": 8, "pool_max": 10}),
    *(
        Setting(
            f"c{c} pool{c + 2} warning",
            f"concurrency {c}, pool {c + 2}, log WARNING",
            {"concurrency": c, "pool_max": c + 2, "log_level": "warning"},
        )
        for c in (4, 8, 16, 32)
    ),
)

# pgqueuer: a worker (`pgqueuer.run`, as `pgq run`) dequeues batch-size jobs per round trip
# (default 10) and runs them all at once; completions are logged in batches of the same size.
# Tuned: 200, on top in both sweeps with 500 (25 to 500 all within about 10 % of each other).
PGQUEUER_DEFAULT = Setting("default", "2 workers, batch size 10 (its default)", {"batch_size": 10})
PGQUEUER_TUNED = Setting("tuned", "2 workers, batch size 200", {"batch_size": 200})
PGQUEUER_CANDIDATES = tuple(
    Setting(f"batch {b}", f"batch size {b}", {"batch_size": b}) for b in (25, 50, 100, 200, 500)
)


class System(Protocol):
    key: str
    label: str

    def worker_settings(self, sweep: bool) -> list[Setting]: ...
    def worker_commands(self, setting: Setting, processes: int) -> list[tuple[list[str], dict[str, str]]]: ...
    def send_one(self, n: int) -> None: ...
    def send_batch(self, numbers: list[int]) -> None: ...
    def remaining(self, jobs: int) -> int: ...
    def progress(self) -> str: ...
    def writes(self) -> tuple[int, int]: ...
    def reset(self) -> None: ...
    def close(self) -> None: ...


# ---- databases --------------------------------------------------------------------------------


@contextlib.contextmanager
def plain_database(base_url: str, name: str) -> Iterator[str]:
    """A fresh, empty database holding only `bench_writes`; dropped on the way out."""
    with fresh_database(base_url, name, _create_bench_writes) as url:
        yield url


def _create_bench_writes(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(BENCH_WRITES_CREATE)


def run_cli(argv: list[str], env: dict[str, str]) -> None:
    """A library's own command (schema set-up); its output shown only when it fails."""
    done = subprocess.run(
        argv, env={**os.environ, **env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")


class _Monitor:
    """The bench's own autocommit connection to a system's database."""

    def __init__(self, database_url: str) -> None:
        self.monitor = psycopg.connect(database_url, autocommit=True)

    def scalar(self, query: str) -> int:
        return self.monitor.execute(query).fetchone()[0]

    def writes(self) -> tuple[int, int]:
        return self.monitor.execute(BENCH_WRITES_COUNT).fetchone()

    def truncate(self, *tables: str) -> None:
        self.monitor.execute(
            sql.SQL("TRUNCATE {} CASCADE").format(sql.SQL(", ").join(map(sql.Identifier, tables)))
        )


# ---- (a) bare Dramatiq ------------------------------------------------------------------------


class BareSystem(BarePath):
    """The throughput bench's bare path with the writing actor; done = message acknowledged."""

    key = "bare"
    label = "bare Dramatiq"

    def __init__(self, redis_url: str, namespace: str, database_url: str) -> None:
        os.environ[DATABASE_URL_ENV] = database_url
        super().__init__(redis_url, namespace)
        from bench.peers import bare_actors

        self.actor = bare_actors.bench_write
        self.env = {**self.env, DATABASE_URL_ENV: database_url}
        self.db = _Monitor(database_url)

    def worker_settings(self, sweep: bool) -> list[Setting]:
        return [BARE_DEFAULT, *BARE_CANDIDATES] if sweep else [BARE_DEFAULT, BARE_TUNED]

    def worker_commands(self, setting: Setting, processes: int) -> list[tuple[list[str], dict[str, str]]]:
        argv = self.worker_argv(processes, setting.params["threads"])
        argv[argv.index(self.BROKER)] = "bench.peers.bare_actors:broker"
        return [(argv, self.env)]

    def send_one(self, n: int) -> None:
        self.actor.send(n)

    def send_batch(self, numbers: list[int]) -> None:
        """Dramatiq has no batch enqueue: a group sends its messages one by one."""
        import dramatiq

        dramatiq.group((self.actor.message(n) for n in numbers), broker=self.broker).run()

    def writes(self) -> tuple[int, int]:
        return self.db.writes()

    def reset(self) -> None:
        super().reset()
        self.db.truncate("bench_writes")

    def close(self) -> None:
        super().close()
        self.db.monitor.close()


# ---- (b) the ledger path ----------------------------------------------------------------------


class LedgerSystem(LedgerPath):
    """The throughput bench's ledger path with the writing actor; done = row `succeeded`."""

    key = "ledger"
    label = "Skyport ledger"

    def __init__(self, database_url: str, redis_url: str, namespace: str, history: int) -> None:
        super().__init__(database_url, redis_url, namespace, history)
        self.env = {**self.env, "SKYPORT_EXTRA_MODULES": "bench.peers.ledger_actors"}
        os.environ.update(self.env)
        from bench.peers import ledger_actors

        self.actor = ledger_actors.bench_write
        self.monitor.execute(BENCH_WRITES_CREATE)

    def worker_settings(self, sweep: bool) -> list[Setting]:
        return [LEDGER_DEFAULT]

    def worker_commands(self, setting: Setting, processes: int) -> list[tuple[list[str], dict[str, str]]]:
        return [(self.worker_argv(processes, setting.params["threads"]), self.env)]

    def send_one(self, n: int) -> None:
        self.workers.enqueue(self.actor, args=(n,))

    def send_batch(self, numbers: list[int]) -> None:
        self.workers.enqueue_many([self.workers.JobSpec(self.actor, args=(n,)) for n in numbers])

    def writes(self) -> tuple[int, int]:
        return self.monitor.execute(BENCH_WRITES_COUNT).fetchone()

    def reset(self) -> None:
        super().reset()
        self.monitor.execute("TRUNCATE bench_writes")


# ---- (c) procrastinate ------------------------------------------------------------------------


class ProcrastinateSystem:
    """Schema by `procrastinate schema --apply`; done = job `succeeded` (kept: delete_jobs=never)."""

    key = "procrastinate"
    label = "procrastinate"
    APP = "bench.peers.procrastinate_app.app"

    def __init__(self, database_url: str) -> None:
        self.env = {DATABASE_URL_ENV: database_url}
        os.environ.update(self.env)
        run_cli([sys.executable, "-m", "procrastinate", f"--app={self.APP}", "schema", "--apply"], self.env)
        from bench.peers import procrastinate_app

        self.app = procrastinate_app.app.open()  # the synchronous connector, for defer
        self.task = procrastinate_app.bench_write
        self.db = _Monitor(database_url)

    def worker_settings(self, sweep: bool) -> list[Setting]:
        if sweep:
            return [PROCRASTINATE_DEFAULT, *PROCRASTINATE_CANDIDATES]
        return [PROCRASTINATE_DEFAULT, PROCRASTINATE_TUNED]

    def worker_commands(self, setting: Setting, processes: int) -> list[tuple[list[str], dict[str, str]]]:
        from bench.peers.procrastinate_app import POOL_MAX_ENV

        argv = [sys.executable, "-m", "procrastinate", f"--app={self.APP}"]
        if "log_level" in setting.params:
            argv.append(f"--log-level={setting.params['log_level']}")
        argv.append("worker")
        if setting.params["concurrency"] != 1:
            argv += ["--concurrency", str(setting.params["concurrency"])]
        env = dict(self.env)
        if "pool_max" in setting.params:
            env[POOL_MAX_ENV] = str(setting.params["pool_max"])
        return [(argv, env)] * processes

    def send_one(self, n: int) -> None:
        self.task.defer(n=n)

    def send_batch(self, numbers: list[int]) -> None:
        self.task.batch_defer(*({"n": n} for n in numbers))

    def remaining(self, jobs: int) -> int:
        return jobs - self.db.scalar("SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'")

    def progress(self) -> str:
        rows = self.db.monitor.execute(
            "SELECT status, count(*) FROM procrastinate_jobs GROUP BY status ORDER BY 1"
        ).fetchall()
        return ", ".join(f"{status}: {count}" for status, count in rows)

    def writes(self) -> tuple[int, int]:
        return self.db.writes()

    def reset(self) -> None:
        self.db.truncate("procrastinate_jobs", "bench_writes")

    def close(self) -> None:
        self.app.close()
        self.db.monitor.close()


# ---- (d) pgqueuer -----------------------------------------------------------------------------


class PgqueuerSystem:
    """Schema by `pgq install`; a finished job leaves the queue table (logged in pgqueuer_log),
    so done = no row left in `pgqueuer`."""

    key = "pgqueuer"
    label = "pgqueuer"

    def __init__(self, database_url: str) -> None:
        from pgqueuer.db import SyncPsycopgDriver
        from pgqueuer.queries import SyncQueries

        from bench.peers.pgqueuer_app import ENTRYPOINT

        self.env = {DATABASE_URL_ENV: database_url, "PGDSN": database_url}
        run_cli([sys.executable, "-m", "pgqueuer", "install"], self.env)
        self.entrypoint = ENTRYPOINT
        self.enqueuer = psycopg.connect(database_url, autocommit=True)
        self.queries = SyncQueries(SyncPsycopgDriver(self.enqueuer))
        self.db = _Monitor(database_url)

    def worker_settings(self, sweep: bool) -> list[Setting]:
        return [PGQUEUER_DEFAULT, *PGQUEUER_CANDIDATES] if sweep else [PGQUEUER_DEFAULT, PGQUEUER_TUNED]

    def worker_commands(self, setting: Setting, processes: int) -> list[tuple[list[str], dict[str, str]]]:
        from bench.peers.pgqueuer_app import DEFAULT_BATCH_SIZE

        argv = [sys.executable, "-m", "bench.peers.pgqueuer_app"]
        if setting.params["batch_size"] != DEFAULT_BATCH_SIZE:
            argv += ["--batch-size", str(setting.params["batch_size"])]
        return [(argv, self.env)] * processes

    def send_one(self, n: int) -> None:
        self.queries.enqueue(self.entrypoint, str(n).encode())

    def send_batch(self, numbers: list[int]) -> None:
        count = len(numbers)
        self.queries.enqueue([self.entrypoint] * count, [str(n).encode() for n in numbers], [0] * count)

    def remaining(self, jobs: int) -> int:
        return self.db.scalar("SELECT count(*) FROM pgqueuer")

    def progress(self) -> str:
        rows = self.db.monitor.execute(
            "SELECT status, count(*) FROM pgqueuer GROUP BY status ORDER BY 1"
        ).fetchall()
        return ", ".join(f"{status}: {count}" for status, count in rows) or "queue empty"

    def writes(self) -> tuple[int, int]:
        return self.db.writes()

    def reset(self) -> None:
        self.db.truncate("pgqueuer", "pgqueuer_log", "bench_writes")

    def close(self) -> None:
        self.enqueuer.close()
        self.db.monitor.close()


def log_path(log_dir: Path, system: System, setting: Setting, index: int) -> Path:
    return log_dir / f"{system.key}-{setting.name.replace(' ', '_')}-{index}.log"
