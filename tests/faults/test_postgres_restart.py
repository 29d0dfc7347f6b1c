"""PostgreSQL restarted under running workers (a private server: the shared one is never stopped).

The worker processes must ride it out: no exit, no restart, heartbeats back within a few seconds
of the server, and every job finished exactly once (its effect written once). Nobody can
heartbeat while the server is down, so right after it started no worker counts as dead yet."""

from __future__ import annotations

import time

import psycopg
import pytest

import config
from tests.faults.conftest import PrivateDatabase
from tests.faults.consistency import check_consistency
from tests.support import WorkerProcess, job_states, scalar, wait_for
from workers import JobSpec, enqueue, enqueue_many, ledger, lifeline

pytestmark = pytest.mark.slow

# Longer than SKYPORT_WORKER_DEAD_AFTER_S in the tests (2 s): every heartbeat goes stale.
OUTAGE_S = 3.0
# How soon after the server is back every worker must heartbeat again.
HEARTBEAT_BACK_WITHIN_S = 8.0


def live_workers(url: str, since: object = None) -> set[tuple[str, int]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT worker_id, pid FROM workers WHERE heartbeat_at > coalesce(%s::timestamptz, '-infinity')",
            (since,),
        ).fetchall()
    return set(rows)


@pytest.mark.timeout(180)
def test_postgres_restarted_mid_run_workers_reconnect_and_finish_every_job_once(
    private_database: PrivateDatabase, redis_namespace: str
) -> None:
    url, server = private_database.url, private_database.server
    quick = [f"pg-quick-{i}" for i in range(100)]
    long = [f"pg-long-{i}" for i in range(4)]  # running across the outage
    after = [f"pg-after-{i}" for i in range(20)]
    with WorkerProcess(processes=2, threads=4) as worker:
        worker.wait_ready(url, count=2)
        workers = live_workers(url)
        enqueue_many(
            [JobSpec("step", [k], {"seconds": 2.5}) for k in long]
            + [JobSpec("step", [k], {"seconds": 0.1}) for k in quick]
        )
        wait_for(
            lambda: scalar(url, "SELECT count(*) FROM effects") >= 20,
            30,
            what=f"jobs to run: {job_states(url)}\n{worker.output()}",
        )
        unfinished = scalar(url, "SELECT count(*) FROM jobs WHERE finished_at IS NULL")
        server.stop("fast")  # every connection of every worker is cut
        time.sleep(OUTAGE_S)
        server.start()
        back = scalar(url, "SELECT now()")
        assert unfinished > 0  # the restart really happened in the middle of the run

        wait_for(
            lambda: live_workers(url, back) == workers,
            HEARTBEAT_BACK_WITHIN_S,
            interval_s=0.2,
            what=f"the same worker processes to heartbeat again: {live_workers(url, back)} vs {workers}\n"
            f"{worker.output()}",
        )
        enqueue_many([JobSpec("step", [k], {"seconds": 0.05}) for k in after])
        total = len(quick) + len(long) + len(after)
        wait_for(
            lambda: job_states(url).get("succeeded") == total,
            60,
            interval_s=0.2,
            what=f"all {total} jobs to succeed: {job_states(url)}\n{worker.output()}",
        )
        assert worker.alive(), worker.output()  # no exit (the dramatiq main process stops when one does)
        assert live_workers(url) == workers  # and no worker process was replaced: same ids, same pids
    states = check_consistency(url, effects=dict.fromkeys(quick + long + after, 1), effect_actors=["step"])
    assert states == {"succeeded": total}


@pytest.mark.timeout(60)
def test_right_after_a_postgres_restart_no_running_job_counts_as_lost_yet(
    private_database: PrivateDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYPORT_WORKER_DEAD_AFTER_S", "3")
    config.get.cache_clear()
    url, server = private_database.url, private_database.server
    with psycopg.connect(url, autocommit=True) as conn:
        lifeline.heartbeat(conn, "quiet-worker", None)
        job = enqueue("remember", ["grace"], conn=conn).id
        assert ledger.job_start(conn, job, "quiet-worker", "m1")
    server.stop("fast")
    server.start()
    with psycopg.connect(url, autocommit=True) as conn:
        # Silent since long before the restart: dead, but the pass cannot tell it yet.
        conn.execute("UPDATE workers SET heartbeat_at = now() - interval '1 minute'")
        assert lifeline.maintenance_pass(conn)["recovered"] == 0
        assert scalar(url, "SELECT state FROM jobs WHERE id = %s", (job,)) == "running"
        # Once the server has been up for worker_dead_after_s, the silence counts.
        wait_for(
            lambda: lifeline.maintenance_pass(conn)["recovered"] == 1, 15, interval_s=0.5, what="recovery"
        )
    assert scalar(url, "SELECT state FROM jobs WHERE id = %s", (job,)) == "queued"
