"""Flow control across real `skyport worker` processes: pause and resume, concurrency limits (per
actor, per key, a killed worker's slots), rate limits and priorities, sampled from the ledger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import psycopg
import pytest

from tests.support import FAST_LIFELINE_ENV, REPO, WorkerProcess, job_states, scalar, wait_for
from workers import JobSpec, enqueue, enqueue_many

pytestmark = pytest.mark.slow


def skyport(*argv: str) -> str:
    env = {**os.environ, **FAST_LIFELINE_ENV, "PYTHONPATH": str(REPO)}  # the tests' actors too
    out = subprocess.run(
        [sys.executable, "-m", "skyport", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


class Sampler(threading.Thread):
    """Samples a number from the ledger every 50 ms until stopped; `values` keeps them."""

    def __init__(self, url: str, query: str) -> None:
        super().__init__(daemon=True)
        self.url, self.query = url, query
        self.values: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stopping.wait(0.05):
                self.values.append(conn.execute(self.query).fetchone()[0])

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.join()


def _all_succeeded(url: str, count: int, worker: WorkerProcess) -> Callable[[], bool]:
    def check() -> bool:
        states = job_states(url)
        assert "dead" not in states, f"{states}\n{worker.output()}"
        return states == {"succeeded": count}

    return check


def test_pause_across_three_processes_holds_every_job_then_resume_runs_them_all(
    effects: str, redis_namespace: str
) -> None:
    with WorkerProcess(processes=3, threads=4) as worker:
        worker.wait_ready(effects, 3)
        enqueue_many([JobSpec("remember", [f"before-{i}"]) for i in range(30)])
        skyport("queues", "pause", "default", "--reason", "bad deploy")
        paused_at = time.monotonic()
        enqueue_many([JobSpec("remember", [f"during-{i}"]) for i in range(60)])
        delayed = enqueue("remember", ["delayed"], delay=1.0)
        time.sleep(max(0.0, paused_at + 2.0 - time.monotonic()))  # every worker knows within 2 s
        started_by = scalar(effects, "SELECT count(*) FROM effects")
        with Sampler(effects, "SELECT count(*) FROM jobs WHERE state = 'running'") as running:
            time.sleep(3.0)
        assert max(running.values) == 0, running.values
        assert scalar(effects, "SELECT count(*) FROM effects") == started_by  # nothing started
        listed = {row["queue"]: row for row in json.loads(skyport("queues", "list", "--json"))}
        assert listed["default"]["paused"] and listed["default"]["paused_reason"] == "bad deploy"
        assert "bad deploy" in skyport("queues", "list")
        held = scalar(effects, "SELECT count(*) FROM jobs WHERE state = 'queued'")
        assert held == 91 - started_by
        assert scalar(effects, "SELECT max(attempts) FROM jobs WHERE state = 'queued'") == 0
        assert scalar(effects, "SELECT state FROM jobs WHERE id = %s", (delayed.id,)) == "queued"
        assert "resumed" in skyport("queues", "resume", "default")
        wait_for(_all_succeeded(effects, 91, worker), 20, what="every job to run after resume")
    assert scalar(effects, "SELECT count(*) FROM effects") == 91  # each once
    assert scalar(effects, "SELECT max(attempts) FROM jobs") == 1


def test_a_paused_actor_holds_only_its_own_jobs(effects: str, redis_namespace: str) -> None:
    with WorkerProcess(processes=1, threads=4) as worker:
        worker.wait_ready(effects)
        skyport("actors", "pause", "flaky")
        time.sleep(1.5)
        held = enqueue("flaky", ["held", 0])
        runs = enqueue("remember", ["runs"])
        wait_for(
            lambda: scalar(effects, "SELECT state FROM jobs WHERE id = %s", (runs.id,)) == "succeeded", 10
        )
        time.sleep(0.5)
        assert scalar(effects, "SELECT waiting_for FROM jobs WHERE id = %s", (held.id,)) == "paused"
        skyport("actors", "resume", "flaky")
        wait_for(_all_succeeded(effects, 2, worker), 10, what="the held job to run after resume")
