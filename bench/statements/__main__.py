"""What the ledger's hot-path statements cost their PostgreSQL backend, next to a bare insert.

    .venv/bin/python -m bench.statements [--calls 4000] [--batch 32] [--rounds 3] [--history 20000]

On one connection of the bench's own database (the ledger holding --history finished jobs,
analyzed, as bench.throughput's), each alternated round measures the backend's CPU (/proc) and
the wall time of:

  bare insert     a one-row INSERT into a table with a bigserial key, committing on its own: the
                  floor of any durable enqueue;
  narrow insert   the same job's columns into a table with only a bigserial key (no CHECK, trigger
                  or other index), as a VALUES list: what the ledger's row costs beyond its data;
  enqueue insert  `JOB_INSERT_ONE` as `enqueue()` runs it (prepared, published, no dedup key);
  claim+success   `JOB_START_MANY` then `JOB_SUCCEED_MANY` for batches of --batch jobs, planned at
                  each run as the workers run them (workers/ledger.py, HOT_PATH_PLANNING);
  ... generic     the same two prepared, with PostgreSQL's generic plan;
  ... HOT copy    the same two on a copy of `jobs` (fillfactor 70) whose only indexes are the
                  primary key, (actor, id), (queue, id) and enqueued_at: no index names a column
                  the claim or the success changes, so both updates can be HOT. An upper bound of
                  what a ledger laid out for HOT updates could save; it has none of the indexes
                  the relay, the lifeline, flow control and the console read.

The bench makes its own database and drops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg

from bench.support.args import add_server_options
from bench.support.cpu import process_cpu_s
from bench.support.databases import bench_database
from bench.support.facts import finish_run, machine_facts, start_run
from bench.throughput.paths import HISTORY_ACTOR, SEED_HISTORY
from workers import ledger_sql as q
from workers.ledger import StartedAttempt, job_start_params, job_succeed_params

WORKER_ID = "bench-statements"
BARE_TABLE = "CREATE TABLE bench_bare (id bigserial PRIMARY KEY, v int)"
HOT_TABLES = """
CREATE TABLE jobs_hot (LIKE jobs INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING IDENTITY)
  WITH (fillfactor = 70);
ALTER TABLE jobs_hot ADD PRIMARY KEY (id);
CREATE INDEX ON jobs_hot (actor, id);
CREATE INDEX ON jobs_hot (queue, id);
CREATE INDEX ON jobs_hot (enqueued_at);
CREATE TABLE job_attempts_hot (LIKE job_attempts INCLUDING ALL);
"""
BARE_INSERT = "INSERT INTO bench_bare (v) VALUES (1)"
NARROW_TABLE = """
CREATE TABLE bench_narrow (
    id bigserial PRIMARY KEY, actor text NOT NULL, queue text NOT NULL, args jsonb, kwargs jsonb,
    max_attempts int, eta timestamptz NOT NULL DEFAULT now(), enqueued_by text, message_id text,
    priority int2, flow_key text, enqueued_at timestamptz NOT NULL DEFAULT now())
"""
NARROW_INSERT = """
INSERT INTO bench_narrow (actor, queue, args, kwargs, max_attempts, enqueued_by, message_id,
                          priority, flow_key)
VALUES (%(actor)s, %(queue)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(max_attempts)s, %(enqueued_by)s,
        gen_random_uuid()::text, %(priority)s, %(flow_key)s)
RETURNING id, message_id
"""
QUEUED = """
INSERT INTO {jobs} (actor, queue, state, max_attempts)
SELECT 'bench', 'default', 'queued', 3 FROM generate_series(1, %s)
"""
HOT_COUNTS = "SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE relname = 'jobs_hot'"
# JOB_INSERT_ONE's parameters for a job `enqueue()` sends at once, without a key (workers/enqueue.py, _one).
ENQUEUE_ROW = {
    "actor": "bench",
    "queue": "default",
    "args": "[]",
    "kwargs": "{}",
    "dedup_key": None,
    "dedup_window_s": None,
    "delay_s": None,
    "eta": None,
    "max_attempts": 3,
    "priority": 0,
    "flow_key": None,
    "enqueued_by": "bench",
    "send": True,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.statements", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--calls", type=int, default=4000, help="inserts, or jobs claimed and succeeded, per measure"
    )
    p.add_argument("--batch", type=int, default=32, help="jobs per claim and success (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="alternated rounds (default: %(default)s)")
    p.add_argument("--history", type=int, default=20_000, help="finished jobs in the ledger throughout")
    add_server_options(p, logs=None)  # it starts no processes
    return p


class Backend:
    """One autocommit connection and its backend's CPU seconds."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.pid = self.conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        with contextlib.suppress(OSError):
            if Path(f"/proc/{self.pid}/cmdline").read_bytes().startswith(b"postgres"):
                return
        raise SystemExit(
            f"backend {self.pid} is not a process of this machine: run the bench beside the server"
        )

    def measure(self, run: Callable[[], int]) -> tuple[float, float]:
        """(CPU ms, wall ms) per unit of `run`, which returns how many units it did."""
        cpu, wall = process_cpu_s(self.pid), time.perf_counter()
        units = run()
        return (process_cpu_s(self.pid) - cpu) * 1000 / units, (time.perf_counter() - wall) * 1000 / units


def _inserts(backend: Backend, calls: int, statement: str, params: dict | tuple) -> Callable[[], int]:
    def run() -> int:
        for _ in range(calls):
            backend.conn.execute(statement, params, prepare=True)
        return calls

    return run


def _on_copy(statement: str, table_ref: str, copy_ref: str) -> str:
    """The statement on the copied table; fails loudly if the statement no longer names the table
    so (measuring `jobs` while reporting the copy)."""
    if table_ref not in statement:
        raise RuntimeError(f"the statement no longer contains {table_ref!r}:\n{statement}")
    return statement.replace(table_ref, copy_ref)


def _claims_and_successes(
    backend: Backend, calls: int, batch: int, *, generic: bool, hot: bool
) -> Callable[[], int]:
    start, succeed = q.JOB_START_MANY, q.JOB_SUCCEED_MANY
    jobs, attempts = "jobs", "job_attempts"
    if hot:
        jobs, attempts = "jobs_hot", "job_attempts_hot"
        start = _on_copy(start, "UPDATE jobs j", f"UPDATE {jobs} j")
        succeed = _on_copy(succeed, "UPDATE jobs j", f"UPDATE {jobs} j")
        succeed = _on_copy(succeed, "INSERT INTO job_attempts", f"INSERT INTO {attempts}")
    conn = backend.conn
    conn.execute(f"DELETE FROM {jobs} WHERE actor = 'bench'")
    conn.execute(QUEUED.format(jobs=jobs), (calls,))
    conn.execute(f"VACUUM ANALYZE {jobs}, {attempts}")  # as autovacuum would: the planner sees them
    ids = [job_id for (job_id,) in conn.execute(f"SELECT id FROM {jobs} WHERE actor = 'bench' ORDER BY id")]
    conn.execute("SET plan_cache_mode = " + ("force_generic_plan" if generic else "auto"))

    def run() -> int:
        done = 0
        for i in range(0, len(ids), batch):
            chunk = ids[i : i + batch]
            params = job_start_params(WORKER_ID, [(job_id, str(job_id)) for job_id in chunk])
            started = conn.execute(start, params, prepare=generic).fetchall()
            outcome = job_succeed_params(WORKER_ID, [StartedAttempt(job_id, 1, 3) for job_id in chunk])
            done += len(conn.execute(succeed, outcome, prepare=generic).fetchall())
            if len(started) != len(chunk):
                raise RuntimeError(f"claimed {len(started)} of {len(chunk)} jobs")
        if done != len(ids):
            raise RuntimeError(f"recorded {done} successes of {len(ids)} jobs")
        return done

    return run


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    tag, log_dir, load_before = start_run("statements")
    with bench_database(args.database_url, f"skyport_bench_{tag}") as url:
        for name, value in machine_facts(url, args.redis_url).items():
            print(f"  {name:<14} {value}")
        backend = Backend(url)
        conn = backend.conn
        conn.execute(SEED_HISTORY, (HISTORY_ACTOR, args.history))
        conn.execute(BARE_TABLE)
        conn.execute(NARROW_TABLE)
        conn.execute(HOT_TABLES)
        conn.execute("VACUUM ANALYZE jobs, job_attempts")
        measures: dict[str, Callable[[], Callable[[], int]]] = {
            "bare insert [per call]": lambda: _inserts(backend, args.calls, BARE_INSERT, ()),
            "narrow insert [per call]": lambda: _inserts(backend, args.calls, NARROW_INSERT, ENQUEUE_ROW),
            "enqueue insert [per call]": lambda: _inserts(backend, args.calls, q.JOB_INSERT_ONE, ENQUEUE_ROW),
            "claim+success, planned [per job]": lambda: _claims_and_successes(
                backend, args.calls, args.batch, generic=False, hot=False
            ),
            "claim+success, generic [per job]": lambda: _claims_and_successes(
                backend, args.calls, args.batch, generic=True, hot=False
            ),
            "claim+success, HOT copy [per job]": lambda: _claims_and_successes(
                backend, args.calls, args.batch, generic=False, hot=True
            ),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in measures}
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no} of {args.rounds} ...", flush=True)
            for name, prepare in measures.items():
                results[name].append(backend.measure(prepare()))
        conn.execute("SELECT pg_stat_force_next_flush()")  # flushed once this backend goes idle
        hot_updates, updates = conn.execute(HOT_COUNTS).fetchone()
        conn.close()
        print(f"\n{args.calls:,} calls or jobs per measure, batches of {args.batch}; ms, each round")
        print(f"{'statement':<36} {'backend CPU':>24}   {'wall':>24}")
        for name, values in results.items():
            cpu = ", ".join(f"{c:.3f}" for c, _ in values)
            wall = ", ".join(f"{w:.3f}" for _, w in values)
            print(f"{name:<36} {cpu:>24}   {wall:>24}")
        print(f"HOT copy: {hot_updates:,} of {updates:,} updates were HOT")
    finish_run(log_dir, keep=False, load_before=load_before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
