"""Flow control across real `skyport worker` processes: pause and resume, concurrency limits (per
actor, per key, a killed worker's slots), rate limits and priorities, sampled from the ledger."""

from __future__ import annotations

import json
import os
import re
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
            time.sleep(1.5)
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
        assert re.search(r"waiting for: paused", skyport("jobs", "show", str(held.id)))
        skyport("enqueue", "flaky", "--args", '["cli", 0]', "--priority", "7")
        assert scalar(effects, "SELECT priority FROM jobs WHERE kwargs = '{}' AND args = '[\"cli\", 0]'") == 7
        skyport("actors", "resume", "flaky")
        wait_for(_all_succeeded(effects, 3, worker), 10, what="the held jobs to run after resume")


def test_a_job_of_priority_0_behind_10000_waiting_worse_ones_starts_within_a_second(
    effects: str, redis_namespace: str
) -> None:
    with WorkerProcess(processes=2, threads=4) as worker:
        worker.wait_ready(effects, 2)
        enqueue_many([JobSpec("noop", [f"n{i}"], priority=9) for i in range(10_000)])
        wait_for(  # the fleet is busy with them
            lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE state = 'succeeded'") >= 200, 30
        )
        urgent = enqueue("remember", ["urgent"], queue="bulk")  # priority 0, the default
        wait_for(lambda: scalar(effects, "SELECT count(*) FROM effects WHERE key = 'urgent'"), 10)
        behind = scalar(effects, "SELECT count(*) FROM jobs WHERE actor = 'noop' AND state = 'queued'")
        waited_s = scalar(
            effects,
            "SELECT extract(epoch FROM e.at - j.enqueued_at) FROM effects e, jobs j "
            "WHERE e.key = 'urgent' AND j.id = %s",
            (urgent.id,),
        )
        assert waited_s < 1.0, (waited_s, behind)
        assert behind > 2000, behind  # it overtook a backlog still there
        assert scalar(effects, "SELECT priority FROM jobs WHERE id = %s", (urgent.id,)) == 0


RUNNING_OF = "SELECT count(*) FROM jobs WHERE state = 'running' AND actor = '{}'"


def test_a_concurrency_limit_of_3_holds_across_three_processes_of_8_threads(
    effects: str, redis_namespace: str
) -> None:
    with WorkerProcess(processes=3, threads=8) as worker:
        worker.wait_ready(effects, 3)
        with Sampler(effects, RUNNING_OF.format("limited")) as running:
            enqueue_many([JobSpec("limited", [f"l{i}", 0.1]) for i in range(60)])
            wait_for(_all_succeeded(effects, 60, worker), 30, what="every limited job to run")
        assert max(running.values) == 3, running.values  # never more, and the limit was used
        assert scalar(effects, "SELECT count(*) FROM effects") == 60
        assert scalar(effects, "SELECT max(attempts) FROM jobs") == 1


def test_a_per_key_limit_of_1_holds_per_key_while_other_keys_run_in_parallel(
    effects: str, redis_namespace: str
) -> None:
    per_key = (
        "SELECT coalesce(max(n), 0) * 100 + count(*) FROM (SELECT flow_key, count(*) AS n FROM jobs "
        "WHERE state = 'running' AND actor = 'per_shipment' GROUP BY flow_key) k"
    )
    with WorkerProcess(processes=2, threads=8) as worker:
        worker.wait_ready(effects, 2)
        with Sampler(effects, per_key) as sampled:
            jobs = [JobSpec("per_shipment", [f"ship-{i % 4}", 0.1]) for i in range(32)]
            enqueue_many(jobs)
            wait_for(_all_succeeded(effects, 32, worker), 30, what="every shipment's jobs to run")
        most_per_key = max(v // 100 for v in sampled.values)
        most_keys_at_once = max(v % 100 for v in sampled.values)
        assert most_per_key == 1, sampled.values
        assert most_keys_at_once >= 2, sampled.values
    assert scalar(effects, "SELECT count(DISTINCT flow_key) FROM jobs") == 4


def test_the_slots_of_a_worker_killed_with_sigkill_come_back_through_the_lifeline(
    effects: str, redis_namespace: str
) -> None:
    skyport("queues", "limit", "flow", "--concurrency", "3")
    queue_running = "SELECT count(*) FROM jobs WHERE state = 'running' AND queue = 'flow'"
    first = WorkerProcess(threads=4).start()
    try:
        first.wait_ready(effects)
        time.sleep(1.5)  # the limit is read
        enqueue_many([JobSpec("hold", [f"h{i}", 60]) for i in range(3)])
        wait_for(lambda: scalar(effects, queue_running) == 3, 10, what="3 slots held")
        with WorkerProcess(threads=4) as second, Sampler(effects, queue_running) as running:
            second.wait_ready(effects, 2)
            steps = enqueue_many([JobSpec("flow_step", [f"s{i}"]) for i in range(5)])
            wait_for(
                lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE waiting_for = 'slot'") == 5,
                10,
                what="the steps to wait for a slot",
            )
            first.kill()  # kill -9 of the process holding every slot
            ids = [ref.id for ref in steps]
            wait_for(
                lambda: (
                    scalar(
                        effects,
                        "SELECT count(*) FROM jobs WHERE id = ANY(%s) AND state = 'succeeded'",
                        (ids,),
                    )
                    == 5
                ),
                20,
                what=f"the steps to run once the lifeline freed the slots\n{second.output()}",
            )
        assert max(running.values) <= 3, running.values
        dead = scalar(effects, "SELECT count(*) FROM jobs WHERE actor = 'hold' AND state = 'dead'")
        assert dead == 3  # a crash counts as an attempt; hold has no retries
    finally:
        first.kill()


# How late the first start of a rate-limited run may be against its slot (a loaded CI machine).
SCHEDULE_SLACK_S = 0.25


@pytest.mark.one_route
def test_a_rate_limit_of_20_per_second_runs_200_jobs_in_10_seconds_across_processes(
    effects: str, redis_namespace: str
) -> None:
    with WorkerProcess(processes=2, threads=4) as worker:
        worker.wait_ready(effects, 2)
        enqueue_many([JobSpec("rated", ["r"]) for _ in range(300)])
        wait_for(lambda: scalar(effects, "SELECT count(*) FROM effects"), 10, what="the first start")
        first = scalar(effects, "SELECT min(at) FROM effects")
        time.sleep(10.5)
        in_10_s = scalar(effects, "SELECT count(*) FROM effects WHERE at < %s + interval '10 s'", (first,))
        starts = scalar(effects, "SELECT array_agg(extract(epoch FROM at)::float8 ORDER BY at) FROM effects")
        # The limiter gives each start a slot 50 ms after the one before; a job may run late (a
        # busy machine), never early. So the k-th start is no earlier than k slots after the first,
        # less how late the first one ran (SCHEDULE_SLACK_S): a burst would be a second early.
        ahead = max(starts[0] + k * 0.05 - at for k, at in enumerate(starts))
        assert 180 <= in_10_s <= 220, (in_10_s, worker.output())
        assert ahead <= SCHEDULE_SLACK_S, f"start {ahead:.3f} s ahead of the 20/s schedule"
        assert "dead" not in job_states(effects)
        assert scalar(effects, "SELECT max(attempts) FROM jobs") <= 1  # waiting spent no attempt
