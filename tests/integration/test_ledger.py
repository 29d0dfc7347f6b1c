"""Ledger transitions, the relay and the lifeline, in-process against real PostgreSQL and Redis."""

from __future__ import annotations

import threading

import psycopg
import pytest
import redis
from dramatiq.brokers.redis import RedisBroker

import config
from tests.conftest import TEST_REDIS_URL
from tests.support import free_port, wait_for
from workers import enqueue, ledger, ledger_sql, lifeline
from workers.relay import publish_due


def _state(conn: psycopg.Connection, job_id: int) -> str:
    return conn.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def _queue_length(namespace: str, queue: str = "default") -> int:
    return redis.Redis.from_url(TEST_REDIS_URL).llen(f"{namespace}:{queue}")


@pytest.fixture
def broker(redis_namespace: str) -> RedisBroker:
    return RedisBroker(url=TEST_REDIS_URL, namespace=redis_namespace, middleware=[])


def test_relay_publishes_due_jobs_once(
    conn: psycopg.Connection, broker: RedisBroker, redis_namespace: str
) -> None:
    # Through the caller's connection, so that the relay publishes them (no send at enqueue).
    due = [enqueue("remember", [str(i)], conn=conn).id for i in range(5)]
    later = enqueue("remember", ["later"], delay=3600, conn=conn).id
    assert publish_due(conn, broker, batch=100) == 5
    assert publish_due(conn, broker, batch=100) == 0  # nothing is published twice
    assert _queue_length(redis_namespace) == 5
    rows = conn.execute(
        "SELECT id, state, published_at IS NOT NULL, message_id IS NOT NULL FROM jobs ORDER BY id"
    ).fetchall()
    assert rows == [(i, "queued", True, True) for i in due] + [(later, "scheduled", False, False)]


def test_a_published_batch_is_consumed_and_acknowledged_by_dramatiqs_own_consumer(
    conn: psycopg.Connection, broker: RedisBroker, redis_namespace: str
) -> None:
    jobs = {enqueue("remember", [f"m{i}"], conn=conn).id: f"m{i}" for i in range(30)}
    assert publish_due(conn, broker, batch=100) == 30
    consumer = broker.consume("default", prefetch=100, timeout=100)
    received = {}
    for message in consumer:
        if message is None:
            break
        received[message.options["job_id"]] = message.args[0]
        consumer.ack(message)
    consumer.close()
    assert received == jobs
    client = redis.Redis.from_url(TEST_REDIS_URL)
    assert client.hlen(f"{redis_namespace}:default.msgs") == 0  # every message acknowledged
    assert client.llen(f"{redis_namespace}:default") == 0


def test_relay_promotes_scheduled_jobs_when_due(conn: psycopg.Connection, broker: RedisBroker) -> None:
    job = enqueue("remember", ["x"], delay=3600).id
    conn.execute("UPDATE jobs SET eta = now() - interval '1 second' WHERE id = %s", (job,))  # time passes
    assert publish_due(conn, broker, batch=10) == 1
    assert _state(conn, job) == "queued"


def test_broker_down_leaves_jobs_in_the_ledger(conn: psycopg.Connection) -> None:
    dead_broker = RedisBroker(url=f"redis://127.0.0.1:{free_port()}/0", namespace="nowhere", middleware=[])
    job = enqueue("remember", ["x"], conn=conn).id
    with pytest.raises(Exception, match=r"(?i)connect"):
        publish_due(conn, dead_broker, batch=10)
    assert conn.execute("SELECT published_at FROM jobs WHERE id = %s", (job,)).fetchone()[0] is None


def _run_to_failure(conn: psycopg.Connection, job_id: int, worker: str, retry_in_s: float | None) -> None:
    conn.execute("UPDATE jobs SET published_at = now(), state = 'queued' WHERE id = %s", (job_id,))
    started = ledger.job_start(conn, job_id, worker, f"m-{worker}")
    assert started is not None
    assert ledger.job_fail(
        conn, started, worker, error="RuntimeError: boom", traceback="tb", retry_in_s=retry_in_s
    )


def test_failure_schedules_a_retry_then_dies(conn: psycopg.Connection) -> None:
    job = enqueue("remember", ["x"]).id
    _run_to_failure(conn, job, "w1", retry_in_s=30)
    state, eta_in, published = conn.execute(
        "SELECT state, eta - now(), published_at FROM jobs WHERE id = %s", (job,)
    ).fetchone()
    assert state == "retrying" and 29 < eta_in.total_seconds() <= 30 and published is None
    _run_to_failure(conn, job, "w2", retry_in_s=None)
    detail = ledger.get_job(conn, job)
    assert detail["state"] == "dead" and detail["finished_at"] is not None
    assert [(h["attempt"], h["worker_id"], h["outcome"], h["error"]) for h in detail["history"]] == [
        (1, "w1", "failed", "RuntimeError: boom"),
        (2, "w2", "failed", "RuntimeError: boom"),
    ]


def test_ops_retry_keeps_history_and_takes_the_key_back(conn: psycopg.Connection) -> None:
    job = enqueue("remember", ["x"], dedup_key="k").id
    _run_to_failure(conn, job, "w1", retry_in_s=None)
    assert enqueue("remember", ["x"], dedup_key="k").id != job  # dead job released the key
    with pytest.raises(ledger.DedupKeyTaken):
        ledger.job_retry(conn, job, extra_attempts=1)
    assert _state(conn, job) == "dead"

    other = enqueue("remember", ["y"], dedup_key="k2").id
    _run_to_failure(conn, other, "w1", retry_in_s=None)
    assert ledger.job_retry(conn, other, extra_attempts=1)
    assert not ledger.job_retry(conn, other, extra_attempts=1)  # a double click retries once
    detail = ledger.get_job(conn, other)
    assert detail["state"] == "queued" and detail["max_attempts"] == 2 and len(detail["history"]) == 1
    assert not enqueue("remember", ["y"], dedup_key="k2").created


def test_cancel_stops_a_waiting_job_and_ignores_a_running_ones_outcome(conn: psycopg.Connection) -> None:
    waiting = enqueue("remember", ["x"], delay=60).id
    assert ledger.job_cancel(conn, waiting, by="ops:ann")
    assert not ledger.job_cancel(conn, waiting, by="ops:ann")
    assert _state(conn, waiting) == "cancelled"

    running = enqueue("remember", ["y"]).id
    started = ledger.job_start(conn, running, "w1", "m1")
    assert ledger.job_cancel(conn, running, by="ops:ann")
    assert not ledger.job_succeed(conn, started, "w1")
    assert _state(conn, running) == "cancelled"


def test_lifeline_requeues_jobs_of_silent_workers_and_kills_crash_loops(conn: psycopg.Connection) -> None:
    lifeline.heartbeat(conn, "alive", None)
    lifeline.heartbeat(conn, "silent", None)
    conn.execute("UPDATE workers SET heartbeat_at = now() - interval '1 minute' WHERE worker_id = 'silent'")
    mine = enqueue("remember", ["alive"]).id
    lost = enqueue("remember", ["lost"]).id
    last_try = enqueue("refuse", ["x"]).id
    conn.execute("UPDATE jobs SET max_attempts = 1 WHERE id = %s", (last_try,))
    ledger.job_start(conn, mine, "alive", "m1")
    ledger.job_start(conn, lost, "silent", "m2")
    ledger.job_start(conn, last_try, "silent", "m3")
    just_started = enqueue("remember", ["young"]).id
    ledger.job_start(conn, just_started, "no-row-yet", "m4")  # its worker has not beaten yet
    conn.execute(
        "UPDATE jobs SET started_at = now() - interval '1 minute' WHERE id = ANY(%s)",
        ([mine, lost, last_try],),
    )

    counts = lifeline.maintenance_pass(conn, config.get())
    assert counts["recovered"] == 2
    assert _state(conn, mine) == "running"
    assert _state(conn, just_started) == "running"
    assert _state(conn, lost) == "queued"
    assert _state(conn, last_try) == "dead"
    history = ledger.get_job(conn, lost)["history"]
    assert [(h["attempt"], h["outcome"], h["worker_id"]) for h in history] == [(1, "lost", "silent")]


def test_a_worker_shutting_down_gives_back_its_own_running_jobs_only(conn: psycopg.Connection) -> None:
    lifeline.heartbeat(conn, "leaving", None)  # beating: its jobs are given back all the same
    mine = [enqueue("remember", [str(i)]).id for i in range(2)]
    last_try = enqueue("refuse", ["x"]).id
    other = enqueue("remember", ["other"]).id
    conn.execute("UPDATE jobs SET max_attempts = 1 WHERE id = %s", (last_try,))
    for i, job in enumerate([*mine, last_try]):
        ledger.job_start(conn, job, "leaving", f"m{i}")
    ledger.job_start(conn, other, "staying", "m-other")

    given_back = ledger.give_back_running(conn, "leaving")
    assert sorted(given_back) == sorted([(mine[0], "queued"), (mine[1], "queued"), (last_try, "dead")])
    assert _state(conn, other) == "running"
    history = ledger.get_job(conn, mine[0])["history"]
    assert [(h["outcome"], h["error"]) for h in history] == [("interrupted", "worker shut down: leaving")]


def _plan(conn: psycopg.Connection, params: dict[str, object]) -> str:
    params = {"limit": 100, "outcome": "lost", "error": "e: "} | params
    rows = conn.execute("EXPLAIN " + ledger_sql.JOB_RELEASE_RUNNING, params, prepare=False).fetchall()
    return "\n".join(r[0] for r in rows)


def test_release_running_is_planned_for_its_branch(conn: psycopg.Connection) -> None:
    """One statement for both callers; planned with its parameters, each keeps the plan it had as
    a statement of its own: a worker's jobs by jobs_running_idx, lost jobs with an anti join."""
    conn.execute(
        """INSERT INTO jobs (actor, queue, state, max_attempts, worker_id, started_at, finished_at)
           SELECT 'remember', 'default', CASE WHEN g % 10 = 0 THEN 'running' ELSE 'succeeded' END, 3,
                  'w' || g % 50, now(), CASE WHEN g % 10 <> 0 THEN now() END
             FROM generate_series(1, 5000) g"""
    )
    conn.execute("ANALYZE jobs")
    give_back = _plan(conn, {"worker_id": "w1", "dead_after_s": None})
    assert "jobs_running_idx" in give_back and "Index Cond: (worker_id = 'w1'::text)" in give_back
    lost = _plan(conn, {"worker_id": None, "dead_after_s": 30.0})
    # Either partial index of the running rows (jobs_running_actor_idx is as small).
    assert "jobs_running_" in lost and "Anti Join" in lost and "SubPlan" not in lost


def test_the_relay_channel_is_the_one_the_insert_trigger_notifies(
    conn: psycopg.Connection, database_url: str
) -> None:
    trigger = conn.execute("SELECT pg_get_functiondef('jobs_notify_relay'::regproc)").fetchone()[0]
    assert f"pg_notify('{ledger_sql.RELAY_CHANNEL}'" in trigger
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN " + ledger_sql.RELAY_CHANNEL)
        enqueue("remember", ["x"], conn=conn)  # left for the relay: the trigger wakes it
        heard = [n.channel for n in listener.notifies(timeout=5, stop_after=1)]
    assert heard == [ledger_sql.RELAY_CHANNEL]


def test_cancel_notifies_the_job_id_on_the_cancel_channel(
    conn: psycopg.Connection, database_url: str
) -> None:
    job = enqueue("remember", ["x"], delay=60).id
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute("LISTEN " + ledger_sql.CANCEL_CHANNEL)
        assert ledger.job_cancel(conn, job, by="ops:ann")
        heard = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
    assert heard == [(ledger_sql.CANCEL_CHANNEL, str(job))]


def test_bulk_retry_takes_dead_and_cancelled_jobs_and_skips_a_taken_key(conn: psycopg.Connection) -> None:
    dead = enqueue("remember", ["dead"], dedup_key="k-dead").id
    _run_to_failure(conn, dead, "w1", retry_in_s=None)
    cancelled = enqueue("remember", ["cancelled"], delay=60).id
    ledger.job_cancel(conn, cancelled, by="ops:ann")
    queued = enqueue("remember", ["queued"]).id
    assert sorted(ledger.jobs_retry_many(conn, [dead, cancelled, queued], 1)) == [dead, cancelled]
    assert ledger.jobs_retry_many(conn, [dead, cancelled], 1) == []  # a double click retries once
    errors = dict(conn.execute("SELECT id, last_error FROM jobs WHERE id = ANY(%s)", ([dead, cancelled],)))
    assert errors[cancelled] is None and errors[dead]  # "cancelled by" is no error; the death's stays

    _run_to_failure(conn, dead, "w2", retry_in_s=None)
    holder = enqueue("remember", ["dead"], dedup_key="k-dead").id  # the dead job's key, taken
    ledger.job_cancel(conn, cancelled, by="ops:ann")
    assert ledger.jobs_retry_many(conn, [dead, cancelled], 1) == [cancelled]  # one at a time
    assert _state(conn, dead) == "dead" and _state(conn, holder) != "dead"


def test_stale_queued_jobs_are_published_again(conn: psycopg.Connection, broker: RedisBroker) -> None:
    job = enqueue("remember", ["x"], conn=conn).id
    publish_due(conn, broker, batch=10)
    assert ledger.republish_stale(conn, after_s=60) == 0
    conn.execute("UPDATE jobs SET published_at = now() - interval '2 minutes' WHERE id = %s", (job,))
    assert ledger.republish_stale(conn, after_s=60) == 1
    assert publish_due(conn, broker, batch=10) == 1


def test_prune_keeps_recent_and_dead_jobs_longer(conn: psycopg.Connection) -> None:
    ids = {name: enqueue("remember", [name]).id for name in ("old-ok", "new-ok", "old-dead", "older-dead")}
    conn.execute(
        "UPDATE jobs SET state = 'succeeded', finished_at = now() - interval '8 days' WHERE id = %s",
        (ids["old-ok"],),
    )
    conn.execute(
        "UPDATE jobs SET state = 'succeeded', finished_at = now() - interval '1 day' WHERE id = %s",
        (ids["new-ok"],),
    )
    conn.execute(
        "UPDATE jobs SET state = 'dead', finished_at = now() - interval '8 days' WHERE id = %s",
        (ids["old-dead"],),
    )
    conn.execute(
        "UPDATE jobs SET state = 'dead', finished_at = now() - interval '31 days' WHERE id = %s",
        (ids["older-dead"],),
    )
    assert ledger.prune_finished(conn, keep_succeeded_days=7, keep_dead_days=30) == 2
    left = {r[0] for r in conn.execute("SELECT id FROM jobs").fetchall()}
    assert left == {ids["new-ok"], ids["old-dead"]}


class _FastWorkerBroker:
    """A broker whose 'worker' takes each message the moment it is published, while the relay's
    transaction is still open (as a real worker can)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.worker_conn = psycopg.connect(database_url, autocommit=True)
        self.threads: list[threading.Thread] = []
        self.started: list[object] = []

    def get_declared_queues(self) -> set[str]:
        return {"default"}

    def declare_queue(self, name: str) -> None:
        pass

    def _waiting_on_a_lock(self) -> bool:
        with psycopg.connect(self.database_url, autocommit=True) as c:
            row = c.execute(
                "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                (self.worker_conn.info.backend_pid,),
            ).fetchone()
        return row is not None and row[0] == "Lock"

    def enqueue(self, message: object) -> None:
        def take() -> None:
            self.started.append(
                ledger.job_start(
                    self.worker_conn, message.options["job_id"], "fast-worker", message.message_id
                )
            )

        thread = threading.Thread(target=take)
        thread.start()
        self.threads.append(thread)
        # Return (and let the relay commit) only once the worker has decided or is waiting for us.
        wait_for(lambda: not thread.is_alive() or self._waiting_on_a_lock(), 10, what="the worker to try")


def test_a_retry_published_is_found_queued_by_the_fastest_worker(
    conn: psycopg.Connection, database_url: str
) -> None:
    job = enqueue("remember", ["x"]).id
    _run_to_failure(conn, job, "w1", retry_in_s=0)  # retrying, due at once
    broker = _FastWorkerBroker(database_url)
    assert publish_due(conn, broker, batch=10) == 1
    for thread in broker.threads:
        thread.join(10)
    broker.worker_conn.close()
    assert broker.started == [ledger.StartedAttempt(job, 2, 4)]  # not skipped as "not queued"
