"""Real `skyport` processes through a real PgBouncer in transaction mode: a worker runs jobs one by
one and batched, retries a failing one to success, drops a claimed job cancelled before a thread
began it (heard by LISTEN on DATABASE_DIRECT_URL, or found by the relay's sweep without it), runs a
view refresh and partition upkeep, and stops cleanly; two schedulers tick once per tick."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from db import pool
from scheduler import state
from tests.pooler.conftest import Pooled, PoolerRun
from tests.support import SkyportProcess, WorkerProcess, job_states, scalar, wait_for
from workers import JobSpec, enqueue, enqueue_many, ledger

pytestmark = pytest.mark.slow

# Jobs enqueued one by one, then in one batch: well over 5 statements per client connection.
JOBS = 12


def _effects(url: str, key: str) -> int:
    return scalar(url, "SELECT count(*) FROM effects WHERE key = %s", (key,))


def _wait_state(
    pooled: Pooled, job_id: int, state_: str, worker: SkyportProcess, timeout_s: float = 30
) -> None:
    def now() -> str:
        return scalar(pooled.direct, "SELECT state FROM jobs WHERE id = %s", (job_id,))

    wait_for(
        lambda: now() == state_,
        timeout_s,
        what=f"job {job_id} to be {state_} (is {now()})\n{worker.output()}",
    )


def _cancel_a_claimed_job(pooled: Pooled, worker: WorkerProcess) -> None:
    """One thread, busy: the consumer claims the two jobs behind it; one is cancelled meanwhile."""
    busy = enqueue("slow", ["busy"], {"seconds": 2.5}).id
    wait_for(
        lambda: _effects(pooled.direct, "busy:start"), 20, what=f"the busy job to start\n{worker.output()}"
    )
    dropped, kept = (ref.id for ref in enqueue_many([JobSpec("remember", [k]) for k in ("dropped", "kept")]))
    wait_for(
        lambda: scalar(pooled.direct, "SELECT count(*) FROM jobs WHERE state = 'running'") == 3,
        10,
        what=f"the two jobs behind the busy one to be claimed\n{worker.output()}",
    )
    with pool.connection() as conn:
        assert ledger.job_cancel(conn, dropped, by="test")
    _wait_state(pooled, busy, "succeeded", worker)
    _wait_state(pooled, kept, "succeeded", worker)
    assert "cancelled before it began; skipped" in worker.output()
    assert _effects(pooled.direct, "dropped") == 0


@pytest.mark.parametrize("pooled", ["pooled", "direct"], indirect=True)
def test_a_worker_runs_retries_and_drops_a_cancelled_claim(pooled: Pooled, pooler_run: PoolerRun) -> None:
    with pooler_run.running(WorkerProcess(threads=1, args=["--shutdown-timeout", "5"])) as worker:
        worker.wait_ready(pooled.direct)
        ids = [enqueue("remember", [f"one-{n}"]).id for n in range(JOBS)]
        ids += [r.id for r in enqueue_many([JobSpec("remember", [f"many-{n}"]) for n in range(JOBS)])]
        flaky = enqueue("flaky", ["flaky"], {"failures": 2}).id
        # In the app's transaction: published by the relay, woken at commit or by its sweep.
        with pool.connect(pooled.url) as app:
            in_transaction = enqueue("remember", ["in-transaction"], conn=app).id
        refresh = enqueue("refresh_matview", ["active_countries"]).id
        upkeep = enqueue("ensure_partitions").id
        for job in [*ids, in_transaction, refresh, upkeep]:
            _wait_state(pooled, job, "succeeded", worker)
        _wait_state(pooled, flaky, "succeeded", worker)
        with psycopg.connect(pooled.direct) as conn:
            history = [h["outcome"] for h in ledger.get_job(conn, flaky)["history"]]
        assert history == ["failed", "failed", "succeeded"]
        _cancel_a_claimed_job(pooled, worker)
        assert worker.stop(timeout_s=30) == 0, worker.output()
        output = worker.output()
    assert "relay: " not in output, output  # the relay never lost its connection
    assert scalar(pooled.direct, "SELECT count(*) FROM workers") == 0  # it said goodbye
    assert (
        scalar(pooled.direct, "SELECT count(*) FROM effects WHERE key LIKE 'one-%%' OR key LIKE 'many-%%'")
        == 2 * JOBS
    )


def test_two_schedulers_enqueue_each_tick_once(pooled: Pooled, pooler_run: PoolerRun, tmp_path: Path) -> None:
    schedule = tmp_path / "schedule.toml"
    schedule.write_text('[tick]\nactor = "remember"\ntrigger = "every 1s"\nargs = ["tick"]\n')
    env = {
        "SKYPORT_SCHEDULE_FILE": str(schedule),
        "SKYPORT_SCHEDULE_LEDGER_LIFELINE": "off",
        "SKYPORT_SCHEDULE_PRUNE_JOBS": "off",
    }
    with (
        pooler_run.running(SkyportProcess(["scheduler"], env)) as first,
        pooler_run.running(SkyportProcess(["scheduler"], env)) as second,
    ):

        def ticks() -> list[str]:
            with psycopg.connect(pooled.direct) as conn:
                rows = conn.execute(
                    "SELECT dedup_key FROM jobs WHERE enqueued_by = 'scheduler:tick'"
                ).fetchall()
            return [key for (key,) in rows]

        wait_for(lambda: len(ticks()) >= 5, 30, what=f"five ticks\n{first.output()}\n{second.output()}")
        time.sleep(1)
        assert first.stop() == 0 and second.stop() == 0, first.output() + second.output()
    keys = ticks()
    assert len(keys) == len(set(keys)), "a tick was enqueued twice"
    assert all(state.tick_time(key) for key in keys)
    assert set(job_states(pooled.direct)) == {"queued"}
