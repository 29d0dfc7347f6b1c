"""Fault tests: real worker processes, a private Redis the test stops and restarts, kill -9,
and the RabbitMQ broker. Afterwards the database says what happened."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.conftest import ON_CI
from tests.support import PrivateRedis, WorkerProcess, job_states, scalar, wait_for
from workers import JobSpec, enqueue, enqueue_many, ledger

pytestmark = pytest.mark.slow


def _each_effect_once(url: str, keys: list[str]) -> None:
    counts = dict(
        scalar(
            url,
            "SELECT coalesce(array_agg(ARRAY[key, n::text]), '{}') FROM "
            "(SELECT key, count(*) n FROM effects GROUP BY key) s",
        )
        or []
    )
    assert sorted(counts) == sorted(keys)
    assert {k: v for k, v in counts.items() if v != "1"} == {}


def test_redis_down_at_enqueue_loses_nothing(effects: str) -> None:
    keys = [f"down-{i}" for i in range(100)]
    with PrivateRedis() as redis_server, WorkerProcess(env={"REDIS_URL": redis_server.url}) as worker:
        worker.wait_ready(effects)
        redis_server.stop()
        enqueue_many([JobSpec("remember", [k]) for k in keys])
        time.sleep(1)  # the relay tries, fails, and keeps the jobs in the ledger
        assert job_states(effects) == {"queued": 100}
        assert scalar(effects, "SELECT count(*) FROM jobs WHERE published_at IS NOT NULL") == 0
        redis_server.start()  # same port, empty
        wait_for(
            lambda: job_states(effects) == {"succeeded": 100},
            60,
            what=f"all 100 to succeed: {job_states(effects)}\n{worker.output()}",
        )
    _each_effect_once(effects, keys)


def test_redis_restarted_empty_after_publishing_still_runs_everything_once(effects: str) -> None:
    keys = [f"lost-{i}" for i in range(100)]
    env = {"SKYPORT_REPUBLISH_AFTER_S": "2"}
    with PrivateRedis() as redis_server:
        env["REDIS_URL"] = redis_server.url
        # A worker that consumes another queue: its relay publishes, nobody takes the jobs.
        with WorkerProcess(env=env, args=["--queues", "other"]) as relay_only:
            relay_only.wait_ready(effects)
            enqueue_many([JobSpec("remember", [k]) for k in keys])
            wait_for(
                lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE published_at IS NOT NULL") == 100,
                20,
                what="the relay to publish",
            )
        redis_server.stop()
        redis_server.start()  # no persistence: the 100 messages are gone
        with WorkerProcess(env=env) as worker:
            wait_for(
                lambda: job_states(effects) == {"succeeded": 100},
                60,
                what=f"all 100 to succeed: {job_states(effects)}\n{worker.output()}",
            )
    _each_effect_once(effects, keys)


def test_kill_9_during_a_job_runs_it_again_to_success(effects: str, redis_namespace: str) -> None:
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        job = enqueue("slow", ["killed"], {"seconds": 2}).id
        wait_for(
            lambda: scalar(effects, "SELECT count(*) FROM effects WHERE key = 'killed:start'"),
            20,
            what="the job to start",
        )
        worker.kill()
    assert scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job,)) == "running"
    with WorkerProcess() as worker:
        wait_for(
            lambda: scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job,)) == "succeeded",
            40,
            what=f"the job to run again\n{worker.output()}",
        )
    with worker_db(effects) as conn:
        history = ledger.get_job(conn, job)["history"]
    assert [h["outcome"] for h in history] == ["lost", "succeeded"]
    assert scalar(effects, "SELECT count(*) FROM effects WHERE key = 'killed:start'") == 2
    assert scalar(effects, "SELECT count(*) FROM effects WHERE key = 'killed:done'") == 1


def test_a_job_that_always_kills_its_worker_ends_dead(effects: str, redis_namespace: str) -> None:
    job = enqueue("crash_worker", ["crash"]).id  # max_retries=2: 3 attempts
    deadline = time.monotonic() + 120
    worker = WorkerProcess()
    try:
        while scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job,)) != "dead":
            assert time.monotonic() < deadline, f"job never died: {job_states(effects)}\n{worker.output()}"
            if not worker.alive():  # the crash takes the whole worker down: restart it, as a supervisor would
                worker = WorkerProcess().start()
            time.sleep(0.2)
    finally:
        worker.kill()
    with worker_db(effects) as conn:
        detail = ledger.get_job(conn, job)
    assert [h["outcome"] for h in detail["history"]] == ["lost", "lost", "lost"]
    assert scalar(effects, "SELECT count(*) FROM effects WHERE key = 'crash'") == 3


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own (queue names are global per vhost)."""
    vhost = f"skyport-test-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        if ON_CI:
            pytest.fail(f"RabbitMQ is not available: {exc}")
        pytest.skip(f"RabbitMQ is not available: {exc}")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)


def test_rabbitmq_broker_runs_retries_and_buries_jobs(effects: str, rabbitmq_url: str) -> None:
    with WorkerProcess(env={"REDIS_URL": rabbitmq_url}) as worker:
        worker.wait_ready(effects)
        ok = enqueue("remember", ["rabbit-ok"]).id
        flaky = enqueue("flaky", ["rabbit-flaky"], {"failures": 1}).id
        poison = enqueue("poison", ["rabbit-poison"]).id
        for job, state in ((ok, "succeeded"), (flaky, "succeeded"), (poison, "dead")):
            wait_for(
                lambda j=job, s=state: scalar(effects, "SELECT state FROM jobs WHERE id = %s", (j,)) == s,
                40,
                what=f"job {job} to be {state}\n{worker.output()}",
            )
        vhost = rabbitmq_url.rsplit("/", 1)[1]
        queues = subprocess.run(
            ["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name"],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        assert "default" in queues  # the messages really went through RabbitMQ
    with worker_db(effects) as conn:
        assert [h["outcome"] for h in ledger.get_job(conn, flaky)["history"]] == ["failed", "succeeded"]
        assert [h["outcome"] for h in ledger.get_job(conn, poison)["history"]] == ["failed"] * 3


def worker_db(url: str):
    import psycopg

    return psycopg.connect(url, autocommit=True)
