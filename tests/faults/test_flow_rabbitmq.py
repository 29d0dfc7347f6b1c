"""Flow control on the RabbitMQ broker: a worker claims each message as it runs it (no claim at
fetch), so pauses and limits hold there too (workers/flow_gate.py)."""

from __future__ import annotations

import psycopg
import pytest

import config
from tests.e2e.test_flow_control import RUNNING_OF, Sampler
from tests.support import WorkerProcess, job_states, scalar, wait_for
from workers import JobSpec, enqueue_many, flow

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
def test_a_pause_and_a_concurrency_limit_hold_on_rabbitmq(
    effects: str, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", rabbitmq_url)  # the app's jobs go by the relay
    config.get.cache_clear()
    with psycopg.connect(effects, autocommit=True) as conn:
        flow.pause(conn, "actor", "remember", "test", "on rabbitmq", {"remember"})
    with WorkerProcess(processes=2, threads=4, env={"BROKER_URL": rabbitmq_url}) as worker:
        worker.wait_ready(effects, 2)
        with Sampler(effects, RUNNING_OF.format("limited")) as running:
            enqueue_many([JobSpec("remember", [f"r{i}"]) for i in range(5)])
            enqueue_many([JobSpec("limited", [f"l{i}", 0.1]) for i in range(20)])
            wait_for(
                lambda: (
                    scalar(
                        effects, "SELECT count(*) FROM jobs WHERE actor = 'limited' AND state = 'succeeded'"
                    )
                    == 20
                ),
                30,
                what=f"the limited jobs to run\n{worker.output()}",
            )
        assert max(running.values) <= 3, running.values
        wait_for(
            lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE waiting_for = 'paused'") == 5,
            10,
            what="the paused actor's jobs to wait",
        )
        assert scalar(effects, "SELECT count(*) FROM effects WHERE key LIKE 'r%%'") == 0
        with psycopg.connect(effects, autocommit=True) as conn:
            assert flow.resume(conn, "actor", "remember", "test", {"remember"}) == 5
        wait_for(lambda: job_states(effects) == {"succeeded": 25}, 20, what=f"all to run\n{worker.output()}")
    assert scalar(effects, "SELECT max(attempts) FROM jobs") == 1
