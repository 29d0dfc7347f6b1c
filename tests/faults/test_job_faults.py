"""Jobs that misbehave, on real worker processes: one overrunning its time limit is stopped and
tried again; a poison message (fails every time) ends dead after its retries while the other
jobs of its queue go on completing."""

from __future__ import annotations

import time

import psycopg
import pytest

from tests.faults.consistency import check_consistency
from tests.support import WorkerProcess, job_states, scalar, wait_for
from workers import enqueue, ledger

pytestmark = pytest.mark.slow


def history(url: str, job_id: int) -> list[dict]:
    with psycopg.connect(url, autocommit=True) as conn:
        return ledger.get_job(conn, job_id)["history"]


def state(url: str, job_id: int) -> str:
    return scalar(url, "SELECT state FROM jobs WHERE id = %s", (job_id,))


@pytest.mark.timeout(60)
def test_a_job_over_its_time_limit_is_stopped_and_retried(effects: str, redis_namespace: str) -> None:
    with WorkerProcess(threads=2) as worker:
        worker.wait_ready(effects)
        enqueued = time.monotonic()
        job = enqueue("overrun_once", ["overrun"], {"seconds": 30}).id  # time_limit: 1 s
        wait_for(
            lambda: state(effects, job) == "succeeded",
            30,
            interval_s=0.1,
            what=f"the job to be retried and succeed: {job_states(effects)}\n{worker.output()}",
        )
        assert time.monotonic() - enqueued < 20  # the 30 s run was cut short
    first, second = history(effects, job)
    assert (first["outcome"], second["outcome"]) == ("failed", "succeeded")
    assert first["error"].startswith("TimeLimitExceeded"), first["error"]
    assert "TimeLimitExceeded" in first["traceback"]
    # Dramatiq checks the limits once a second: the first attempt ran about 1-2 s.
    assert 1 <= (first["finished_at"] - first["started_at"]).total_seconds() < 10
    check_consistency(effects, effects={"overrun:start": 2, "overrun:done": 1})


@pytest.mark.timeout(60)
def test_a_poison_message_ends_dead_without_blocking_its_queue(effects: str, redis_namespace: str) -> None:
    keys: list[str] = []
    # One worker thread: a poison message that held its queue up would stop everything at once.
    with WorkerProcess(threads=1) as worker:
        worker.wait_ready(effects)
        poison = enqueue("poison_slowly", ["poison"]).id  # same queue ("default"), 5 attempts
        deadline = time.monotonic() + 40
        while state(effects, poison) != "dead":
            assert time.monotonic() < deadline, (
                f"the poison never died: {job_states(effects)}\n{worker.output()}"
            )
            keys.append(f"ok-{len(keys)}")
            enqueue("remember", [keys[-1]])
            time.sleep(0.1)
        wait_for(
            lambda: job_states(effects) == {"succeeded": len(keys), "dead": 1},
            30,
            what=f"the other jobs to finish: {job_states(effects)}\n{worker.output()}",
        )
    attempts = history(effects, poison)
    assert [a["outcome"] for a in attempts] == ["failed"] * 5
    assert all(a["error"] == "ValueError: poison message: fails every time" for a in attempts)
    assert "poison message" in scalar(effects, "SELECT last_error FROM jobs WHERE id = %s", (poison,))
    # While the poison waited between its attempts, the queue went on: other jobs finished in between.
    in_between = scalar(
        effects,
        """SELECT count(*) FROM jobs
            WHERE actor = 'remember'
              AND finished_at > (SELECT min(finished_at) FROM job_attempts WHERE job_id = %(p)s)
              AND finished_at < (SELECT finished_at FROM jobs WHERE id = %(p)s)""",
        {"p": poison},
    )
    assert in_between >= 3, in_between
    check_consistency(effects, effects={"poison": 5, **dict.fromkeys(keys, 1)}, effect_actors=["remember"])
