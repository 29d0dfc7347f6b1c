"""Real `skyport worker` processes on real PostgreSQL and Redis; each test on the server directly
and through a PgBouncer in transaction mode (tests/e2e/conftest.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import psycopg
import pytest

from tests.support import REPO, WorkerProcess, job_states, scalar, wait_for
from workers import JobSpec, enqueue, enqueue_many, ledger

pytestmark = pytest.mark.slow


def _effects(url: str, key: str) -> int:
    return scalar(url, "SELECT count(*) FROM effects WHERE key = %s", (key,))


def _state(url: str, job_id: int) -> str:
    return scalar(url, "SELECT state FROM jobs WHERE id = %s", (job_id,))


def _wait_state(
    url: str, job_id: int, state: str, timeout_s: float = 30, worker: WorkerProcess | None = None
):
    wait_for(
        lambda: _state(url, job_id) == state,
        timeout_s,
        what=f"job {job_id} to be {state} (is {_state(url, job_id)})\n{worker.output() if worker else ''}",
    )


def test_ping_round_trip_through_the_cli(effects: str, redis_namespace: str) -> None:
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        out = subprocess.run(
            [sys.executable, "-m", "skyport", "ping", "--timeout", "20"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr + worker.output()
        assert out.stdout.startswith("pong: job ")
    assert job_states(effects) == {"succeeded": 1}


def test_dedup_key_from_sixteen_threads_runs_once(effects: str, redis_namespace: str) -> None:
    # The window keeps the key blocked after the job finished, so a thread that comes late (after
    # the first job already ran) still finds it instead of starting a second one.
    barrier = threading.Barrier(16)

    def go() -> None:
        barrier.wait()
        enqueue("remember", ["dedup-16"], dedup_key="dedup-16", dedup_window=60)

    threads = [threading.Thread(target=go) for _ in range(16)]
    with WorkerProcess(processes=2, threads=4) as worker:
        worker.wait_ready(effects, 2)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_for(
            lambda: job_states(effects) == {"succeeded": 1},
            20,
            what=f"the job to succeed: {job_states(effects)}\n{worker.output()}",
        )
        time.sleep(0.5)  # give a duplicate run the chance to show itself
    assert _effects(effects, "dedup-16") == 1


def test_transactional_enqueue_rollback_never_runs_commit_runs_within_a_second(
    effects: str, redis_namespace: str
) -> None:
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        with psycopg.connect(effects) as app:
            enqueue("remember", ["rolled-back"], conn=app)
            app.rollback()
            ref = enqueue("remember", ["committed"], conn=app)
            app.commit()
            committed_at = time.monotonic()
        _wait_state(effects, ref.id, "succeeded", 5, worker)
        assert time.monotonic() - committed_at < 1.0
    assert _effects(effects, "committed") == 1
    assert _effects(effects, "rolled-back") == 0
    assert scalar(effects, "SELECT count(*) FROM jobs") == 1


def test_retries_on_the_ledger_backoff_then_success_or_dead(effects: str, redis_namespace: str) -> None:
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        flaky = enqueue("flaky", ["flaky"], {"failures": 2}).id
        poison = enqueue("poison", ["poison"]).id
        refused = enqueue("refuse", ["refused"]).id
        for job, state in ((flaky, "succeeded"), (poison, "dead"), (refused, "dead")):
            _wait_state(effects, job, state, 30, worker)
    with psycopg.connect(effects) as conn:
        flaky_h = ledger.get_job(conn, flaky)["history"]
        poison_job = ledger.get_job(conn, poison)
        refused_job = ledger.get_job(conn, refused)
    assert [h["outcome"] for h in flaky_h] == ["failed", "failed", "succeeded"]
    # backoff of min 0.5 s (equal jitter: at least half of it) between attempts
    assert (flaky_h[1]["started_at"] - flaky_h[0]["finished_at"]).total_seconds() >= 0.25
    assert [h["outcome"] for h in poison_job["history"]] == ["failed"] * 3  # max_retries=2
    assert "ValueError: poison message" in poison_job["last_error"]
    assert "Traceback" in poison_job["history"][-1]["traceback"]
    assert len(refused_job["history"]) == 1  # PermanentError: never retried
    assert _effects(effects, "refused") == 1


def test_queue_selection(effects: str, redis_namespace: str) -> None:
    with WorkerProcess(args=["--queues", "other"]) as worker:
        worker.wait_ready(effects)
        mine = enqueue("on_other_queue", ["other"]).id
        not_mine = enqueue("remember", ["default"]).id
        _wait_state(effects, mine, "succeeded", 20, worker)
        time.sleep(0.5)
        assert _state(effects, not_mine) == "queued"


def test_sigterm_finishes_short_jobs_and_gives_back_long_ones(effects: str, redis_namespace: str) -> None:
    worker = WorkerProcess(args=["--shutdown-timeout", "1"]).start()
    try:
        worker.wait_ready(effects)
        short = enqueue("slow", ["short"], {"seconds": 0.3}).id
        long = enqueue("slow", ["long"], {"seconds": 3}).id
        wait_for(
            lambda: _effects(effects, "short:start") and _effects(effects, "long:start"),
            20,
            what="both jobs to start",
        )
        assert worker.stop(timeout_s=30) == 0, worker.output()
    finally:
        worker.kill()
    assert _state(effects, short) == "succeeded"
    assert _state(effects, long) == "queued"  # given back, not lost
    assert scalar(effects, "SELECT outcome FROM job_attempts WHERE job_id = %s", (long,)) == "interrupted"
    assert scalar(effects, "SELECT count(*) FROM workers") == 0
    with WorkerProcess() as again:
        again.wait_ready(effects)
        _wait_state(effects, long, "succeeded", 30, again)
    assert _effects(effects, "long:done") == 1


def test_sigterm_hands_back_fetched_jobs_no_thread_started_without_spending_an_attempt(
    effects: str, redis_namespace: str
) -> None:
    # One thread: the consumer holds (and claims) up to four messages, the busy job's and three more.
    worker = WorkerProcess(threads=1, args=["--shutdown-timeout", "1"]).start()
    try:
        worker.wait_ready(effects)
        busy = enqueue("slow", ["busy"], {"seconds": 3}).id
        wait_for(lambda: _effects(effects, "busy:start"), 20, what="the busy job to start")
        # In one call, so that the consumer finds all three at its next fetch.
        waiting = [ref.id for ref in enqueue_many([JobSpec("remember", [f"waiting-{i}"]) for i in range(3)])]
        wait_for(
            lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE state = 'running'") == 4,
            10,
            what=f"the waiting jobs to be claimed\n{worker.output()}",
        )
        assert worker.stop(timeout_s=30) == 0, worker.output()
    finally:
        worker.kill()
    assert _state(effects, busy) == "queued"  # interrupted: that attempt counts
    assert scalar(effects, "SELECT attempts FROM jobs WHERE id = %s", (busy,)) == 1
    with psycopg.connect(effects, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT state, attempts, (SELECT count(*) FROM job_attempts a WHERE a.job_id = j.id)"
            " FROM jobs j WHERE id = ANY(%s)",
            (waiting,),
        ).fetchall()
    assert rows == [("queued", 0, 0)] * 3  # claimed, never run: no attempt spent
    with WorkerProcess() as again:
        again.wait_ready(effects)
        for job in waiting:
            _wait_state(effects, job, "succeeded", 30, again)
    assert [_effects(effects, f"waiting-{i}") for i in range(3)] == [1, 1, 1]
    assert scalar(effects, "SELECT max(attempts) FROM jobs WHERE id = ANY(%s)", (waiting,)) == 1


def test_a_claimed_job_cancelled_before_a_thread_began_it_never_runs(
    effects: str, redis_namespace: str
) -> None:
    # One thread: the consumer claims the jobs behind the busy one while it runs; they show running.
    with WorkerProcess(threads=1) as worker:
        worker.wait_ready(effects)
        busy = enqueue("slow", ["cancel-busy"], {"seconds": 3}).id
        wait_for(lambda: _effects(effects, "cancel-busy:start"), 20, what="the busy job to start")
        jobs = enqueue_many([JobSpec("remember", [key]) for key in ("dropped", "kept")])  # one fetch
        cancelled, kept = (ref.id for ref in jobs)
        wait_for(
            lambda: scalar(effects, "SELECT count(*) FROM jobs WHERE state = 'running'") == 3,
            10,
            what=f"the two jobs behind the busy one to be claimed\n{worker.output()}",
        )
        assert _effects(effects, "cancel-busy:done") == 0  # still busy: no thread began the other two
        with psycopg.connect(effects, autocommit=True) as conn:
            assert ledger.job_cancel(conn, cancelled, by="test")
        _wait_state(effects, busy, "succeeded", 30, worker)
        _wait_state(effects, kept, "succeeded", 30, worker)
        assert "cancelled before it began; skipped" in worker.output()
    assert _effects(effects, "dropped") == 0
    assert _effects(effects, "kept") == 1
    assert _state(effects, cancelled) == "cancelled"


def test_delayed_and_retrying_jobs_survive_a_restart_of_every_worker(
    effects: str, redis_namespace: str
) -> None:
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        retrying = enqueue("flaky", ["restart-flaky"], {"failures": 1}).id
        _wait_state(effects, retrying, "retrying", 20, worker)
        delayed = enqueue("remember", ["delayed"], delay=2).id
        enqueued_at = time.monotonic()
        worker.kill()  # every worker gone, no grace
    assert _state(effects, delayed) == "scheduled"
    with WorkerProcess() as worker:
        worker.wait_ready(effects)
        _wait_state(effects, delayed, "succeeded", 20, worker)
        _wait_state(effects, retrying, "succeeded", 20, worker)
    ran_after = scalar(
        effects,
        "SELECT at - (SELECT enqueued_at FROM jobs WHERE id = %s) FROM effects WHERE key = 'delayed'",
        (delayed,),
    ).total_seconds()
    assert 2.0 <= ran_after < 2.0 + (time.monotonic() - enqueued_at)
    assert _effects(effects, "delayed") == 1
