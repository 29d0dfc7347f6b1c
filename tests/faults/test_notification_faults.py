"""Notification dispatchers as real processes: a new notification reaches a worker through the
wake-up within about a second, and a dispatcher killed with kill -9 while it holds a lease (the
`notifications dispatch` command, or a worker in the middle of the dispatch job's sends) loses
nothing and sends each notification once (its rows go out again once the lease has passed)."""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest

from jobs.notifications import dispatch_due, enqueue_notification
from jobs.notifications.channels import HttpChannel, InAppChannel
from jobs.notifications.queue import wake_dispatcher
from tests.faults.consistency import check_consistency
from tests.notify.servers import HttpProvider
from tests.support import SkyportProcess, WorkerProcess, job_states, scalar, wait_for

pytestmark = pytest.mark.slow


def make_user(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO users (email, password_hash, user_type, phone) VALUES (%s, 'x', 'private', '+4100')"
        " RETURNING user_id",
        (f"{uuid.uuid4().hex[:12]}@example.com",),
    ).fetchone()[0]


def insert_sms_rows(conn: psycopg.Connection, user: uuid.UUID, prefix: str, count: int) -> None:
    """`count` SMS notifications, without waking anybody."""
    conn.execute(
        """
        INSERT INTO notification_queue (user_id, notification_type, dedup_key, title, message, send_via)
        SELECT %s, 'bulk', %s || g, 't', 'm', ARRAY['sms']
          FROM generate_series(1, %s) g
        """,
        (user, prefix, count),
    )


def sent(database_url: str) -> int:
    return scalar(database_url, "SELECT count(*) FROM notification_queue WHERE status = 'sent'")


@pytest.mark.timeout(60)
def test_a_new_notification_is_delivered_by_a_worker_within_about_a_second(
    database_url: str, redis_namespace: str, conn: psycopg.Connection
) -> None:
    user = make_user(conn)
    with WorkerProcess(threads=2) as worker:
        worker.wait_ready(database_url)
        latencies = []
        for i in range(3):
            with conn.transaction():
                assert enqueue_notification(conn, user, "t", "hello", "world", f"wake-{i}")
            committed = time.monotonic()
            wait_for(
                lambda i=i: scalar(
                    database_url,
                    "SELECT status = 'sent' FROM notification_queue WHERE dedup_key = %s",
                    (f"wake-{i}",),
                ),
                15,
                what=f"notification wake-{i} to be sent\n{worker.output()}",
            )
            latencies.append(time.monotonic() - committed)
        # The first one includes the worker's warm-up; a shared machine gets a generous margin.
        assert min(latencies[1:]) < 1.5, latencies
    sent_at_delay = scalar(
        database_url, "SELECT max(sent_at - created_at) FROM notification_queue WHERE dedup_key <> 'wake-0'"
    )
    assert sent_at_delay.total_seconds() < 3, sent_at_delay


@pytest.mark.timeout(60)
def test_a_dispatcher_killed_while_holding_a_lease_loses_nothing(database_url: str, conn) -> None:
    user = make_user(conn)
    insert_sms_rows(conn, user, "k9-", 60)
    with HttpProvider() as sms:
        # Ten sends answered, then the provider holds the next request: the dispatcher is killed
        # while it waits on it, in the middle of its batch, whatever the machine's load.
        sms.plan = ["ok"] * 10
        sms.mode = "timeout"
        sms.hang_s = 30.0  # past the asserts below: the held request ends after the test
        env = {
            "SKYPORT_SMS_URL": sms.url,
            "SKYPORT_SMS_TIMEOUT_S": "10",
            "SKYPORT_NOTIFY_LEASE_S": "3",
            "SKYPORT_NOTIFY_BATCH": "20",
        }
        held_query = "SELECT count(*) FROM notification_queue WHERE status = 'processing'"
        with SkyportProcess(["notifications", "dispatch"], env) as dispatcher:
            wait_for(
                lambda: sms.requests > 10,
                30,
                interval_s=0.01,
                what=f"the eleventh send to be held\n{dispatcher.output()}",
            )
            dispatcher.kill()
        sms.mode = "ok"
        assert len(sms.received) == 10
        held = scalar(database_url, held_query)
        assert held > 0  # the killed dispatcher held rows under a lease
        # Another dispatcher: the lease passes, the rows come back, everything is sent.
        channels = {"in_app": InAppChannel(), "sms": HttpChannel("sms", sms.url, None, 1.0)}

        def all_sent() -> bool:
            with psycopg.connect(database_url, autocommit=True) as c:
                dispatch_due(c, channels=channels, batch=20, lease_s=3)
            return sent(database_url) == 60

        wait_for(all_sent, 30, interval_s=0.2, what="every row to be sent after the kill")
        assert set(sms.received) == {f"k9-{g}:sms" for g in range(1, 61)}
    # At most the one request in flight at the kill went out twice (the provider gets the same
    # Idempotency-Key both times).
    check_consistency(database_url, receipts={"sms": sms.received}, resends=1)


@pytest.mark.timeout(90)
def test_a_worker_killed_during_notification_sends_loses_none_and_sends_each_once(
    database_url: str, redis_namespace: str, conn: psycopg.Connection
) -> None:
    user = make_user(conn)
    insert_sms_rows(conn, user, "wk9-", 60)
    # The lease covers the SMS timeout and the dispatcher's 1 s margin (jobs/notifications/dispatch.py).
    env = {"SKYPORT_NOTIFY_LEASE_S": "7", "SKYPORT_NOTIFY_BATCH": "20", "SKYPORT_SMS_TIMEOUT_S": "5"}
    with HttpProvider() as sms:
        # The sends after the 10th wait for the test: the kill lands while one is in flight, its
        # row under the lease, however slow the machine (timed sends once let it fall between
        # two batches). The test has the 5 s of the SMS timeout to kill the worker.
        sms.hold_after = 10
        env["SKYPORT_SMS_URL"] = sms.url
        with WorkerProcess(threads=2, env=env) as worker:
            worker.wait_ready(database_url)
            wake_dispatcher()
            wait_for(
                lambda: sms.requests > 10,
                30,
                interval_s=0.02,
                what=f"sends to start\n{worker.output()}",
            )
            worker.kill()  # in the middle of the dispatch job's sends
            sms.unhold.set()  # the provider takes the held sends: their rows go out twice
        assert 0 < sent(database_url) < 60
        held = scalar(database_url, "SELECT count(*) FROM notification_queue WHERE status = 'processing'")
        assert held > 0  # the killed worker held rows under a lease
        assert scalar(database_url, "SELECT count(*) FROM jobs WHERE state = 'running'") >= 1
        with WorkerProcess(threads=2, env=env) as worker:
            # The lifeline recovers the killed dispatch job, which runs again; rows still under the dead
            # worker's lease go out at a dispatch after it has passed: the scheduler's tick (every 10 s),
            # which the test plays, faster.
            def all_sent() -> bool:
                wake_dispatcher()
                return sent(database_url) == 60

            wait_for(all_sent, 40, interval_s=0.5, what=f"every row to be sent\n{worker.output()}")
            wait_for(
                lambda: set(job_states(database_url)) <= {"succeeded", "dead", "cancelled"},
                20,
                what=f"the dispatch jobs to finish: {job_states(database_url)}\n{worker.output()}",
            )
    lost = scalar(
        database_url, "SELECT count(*) FROM job_attempts WHERE outcome = 'lost'"
    )  # the killed dispatch job was recovered, not left running
    assert lost >= 1
    # A send in flight at the kill may go out twice, with the same Idempotency-Key (the provider
    # deduplicates): one per dispatch job running then, at most two (the wake-up and its follow-up).
    check_consistency(database_url, receipts={"sms": sms.received}, resends=2)
