"""Fault tests: real worker processes, a private Redis the test stops and restarts, kill -9,
and the RabbitMQ broker. Afterwards the database says what happened."""

from __future__ import annotations

import time

import psycopg
import pytest

import config
from tests.faults.consistency import check_consistency
from tests.support import PrivateRedis, WorkerProcess, job_states, rabbitmq_queues, scalar, wait_for
from workers import JobSpec, enqueue, enqueue_many, ledger

pytestmark = pytest.mark.slow


def _use_redis(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    """The test process's broker URL: where enqueue() sends jobs (to Redis, right after they commit)."""
    monkeypatch.setenv("BROKER_URL", url)
    config.get.cache_clear()


@pytest.mark.timeout(90)
def test_redis_down_at_enqueue_loses_nothing(effects: str, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"down-{i}" for i in range(100)]
    with PrivateRedis() as redis_server, WorkerProcess(env={"BROKER_URL": redis_server.url}) as worker:
        _use_redis(monkeypatch, redis_server.url)  # the app's enqueue sends to the workers' Redis
        worker.wait_ready(effects)
        redis_server.stop()
        enqueue_many([JobSpec("remember", [k]) for k in keys])  # sending fails: left to the relay
        time.sleep(1)  # the relay tries, fails, and keeps the jobs in the ledger
        assert job_states(effects) == {"queued": 100}
        # Each relay attempt claims the rows (marked published) and gives them back when Redis
        # refuses; between its attempts none is marked published.
        wait_for(
            lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE published_at IS NOT NULL") == 0,
            10,
            what="the relay to give the refused batch back",
        )
        redis_server.start()  # same port, empty
        wait_for(
            lambda: job_states(effects) == {"succeeded": 100},
            60,
            what=f"all 100 to succeed: {job_states(effects)}\n{worker.output()}",
        )
    check_consistency(effects, effects=dict.fromkeys(keys, 1), effect_actors=["remember"])


@pytest.mark.timeout(90)
def test_redis_restarted_empty_after_publishing_still_runs_everything_once(
    effects: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = [f"lost-{i}" for i in range(100)]
    env = {"SKYPORT_REPUBLISH_AFTER_S": "2"}
    with PrivateRedis() as redis_server:
        env["BROKER_URL"] = redis_server.url
        _use_redis(monkeypatch, redis_server.url)
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
    check_consistency(effects, effects=dict.fromkeys(keys, 1), effect_actors=["remember"])


@pytest.mark.timeout(90)
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
    check_consistency(effects, effects={"killed:start": 2, "killed:done": 1})


@pytest.mark.timeout(150)
def test_a_job_that_always_kills_its_worker_ends_dead(effects: str, redis_namespace: str) -> None:
    job = enqueue("crash_worker", ["crash"]).id  # max_retries=2: 3 attempts
    deadline = time.monotonic() + 120
    worker = WorkerProcess()
    try:
        while scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job,)) != "dead":
            report = f"{_job_report(effects, job)}\n{worker.output()}"
            assert time.monotonic() < deadline, f"job never died: {report}"
            if not worker.alive():  # the crash takes the whole worker down: restart it, as a supervisor would
                worker = WorkerProcess().start()
            time.sleep(0.2)
    finally:
        worker.kill()
    with worker_db(effects) as conn:
        detail = ledger.get_job(conn, job)
    assert [h["outcome"] for h in detail["history"]] == ["lost", "lost", "lost"]
    check_consistency(effects, effects={"crash": 3})


def _job_report(database_url: str, job: int) -> str:
    """The job's row, its attempts and the workers table: what a failed wait needs to be read."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT state, attempts, max_attempts, worker_id, started_at, published_at, now()"
            " FROM jobs WHERE id = %s",
            (job,),
        ).fetchone()
        attempts = conn.execute(
            "SELECT attempt, worker_id, outcome FROM job_attempts WHERE job_id = %s ORDER BY attempt", (job,)
        ).fetchall()
        workers = conn.execute("SELECT worker_id, started_at, heartbeat_at FROM workers").fetchall()
    return f"job {row}\nattempts {attempts}\nworkers {workers}"


@pytest.mark.timeout(90)
def test_rabbitmq_broker_runs_retries_and_buries_jobs(
    effects: str, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_redis(monkeypatch, rabbitmq_url)  # the app's broker too (its jobs then go by the relay)
    with WorkerProcess(env={"BROKER_URL": rabbitmq_url}) as worker:
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
        assert "default" in rabbitmq_queues(rabbitmq_url)  # the messages really went through RabbitMQ
    with worker_db(effects) as conn:
        assert [h["outcome"] for h in ledger.get_job(conn, flaky)["history"]] == ["failed", "succeeded"]
        assert [h["outcome"] for h in ledger.get_job(conn, poison)["history"]] == ["failed"] * 3
    check_consistency(effects, effects={"rabbit-ok": 1, "rabbit-flaky": 2, "rabbit-poison": 3})


@pytest.mark.timeout(90)
def test_rabbitmq_kill_9_during_jobs_runs_each_again_once(
    effects: str, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_redis(monkeypatch, rabbitmq_url)
    env = {"BROKER_URL": rabbitmq_url}
    keys = [f"rabbit-slow-{i}" for i in range(4)]  # 2 threads: two run, two wait prefetched (unacked)
    with WorkerProcess(threads=2, env=env) as worker:
        worker.wait_ready(effects)
        refs = enqueue_many([JobSpec("slow", [k], {"seconds": 2}) for k in keys])
        jobs = {k: ref.id for k, ref in zip(keys, refs, strict=True)}
        wait_for(
            lambda: (
                scalar(effects, "SELECT count(*) FROM effects WHERE key LIKE 'rabbit-slow-%%:start'") == 2
            ),
            20,
            what=f"two jobs to start\n{worker.output()}",
        )
        worker.kill()  # RabbitMQ hands the dead connection's unacked messages out again
    killed = [
        k for k in keys if scalar(effects, "SELECT state FROM jobs WHERE id = %s", (jobs[k],)) == "running"
    ]
    assert len(killed) == 2
    with WorkerProcess(threads=2, env=env) as worker:
        wait_for(
            lambda: job_states(effects) == {"succeeded": 4},
            40,
            what=f"every job to succeed: {job_states(effects)}\n{worker.output()}",
        )
        assert "default" in rabbitmq_queues(rabbitmq_url)
    with worker_db(effects) as conn:
        outcomes = {k: [h["outcome"] for h in ledger.get_job(conn, jobs[k])["history"]] for k in keys}
    # The two cut short: recovered by the lifeline, run again (their redelivered messages skipped).
    assert outcomes == {k: ["lost", "succeeded"] if k in killed else ["succeeded"] for k in keys}
    starts = {f"{k}:start": 2 if k in killed else 1 for k in keys}
    check_consistency(effects, effects={**starts, **{f"{k}:done": 1 for k in keys}})


def worker_db(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True)
