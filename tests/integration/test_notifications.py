"""Notification delivery against real PostgreSQL, a real SMTP server (aiosmtpd) and a local HTTP
provider told to fail: dedup, channels, retries on the backoff schedule, dead rows, leases, ops
retry, and concurrent dispatchers sending each row exactly once."""

from __future__ import annotations

import email.utils
import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from jobs.notifications import Backoff, dispatch_due, enqueue_notification, list_dead, retry_dead
from jobs.notifications.channels import HttpChannel, InAppChannel, SmtpChannel, UnconfiguredChannel
from jobs.notifications.queue import WAKE_KEY, claim_due
from jobs.notifications.throttle import DEFAULT_THROTTLE_S, ThrottledChannel
from tests.notify.servers import HttpProvider, SmtpSink

# Short delays so that retries come due within a test.
FAST_BACKOFF = Backoff(base_s=0.4, max_s=2.0)


def make_user(conn: psycopg.Connection, phone: str | None = "+41790000000") -> uuid.UUID:
    return conn.execute(
        "INSERT INTO users (email, password_hash, user_type, phone) VALUES (%s, 'x', 'private', %s)"
        " RETURNING user_id",
        (f"{uuid.uuid4().hex[:12]}@example.com", phone),
    ).fetchone()[0]


def add(conn: psycopg.Connection, user_id: uuid.UUID, key: str, send_via=("in_app",), **kw: Any) -> bool:
    return enqueue_notification(
        conn, user_id, "test", f"title {key}", f"message {key}", key, send_via=send_via, wake=False, **kw
    )


def row(conn: psycopg.Connection, key: str) -> dict[str, Any]:
    cur = conn.execute(
        "SELECT status, attempts, last_error, next_retry_at, sent_at, delivered_at, channels_done,"
        " locked_by, updated_at FROM notification_queue WHERE dedup_key = %s",
        (key,),
    )
    names = [d.name for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def channels(smtp: SmtpSink | None = None, sms: HttpProvider | None = None, timeout_s: float = 1.0):
    return {
        "in_app": InAppChannel(),
        "email": SmtpChannel("127.0.0.1", smtp.port, "none", "Skyport <n@skyport.test>", timeout_s=timeout_s)
        if smtp
        else UnconfiguredChannel("email", "SKYPORT_SMTP_HOST"),
        "sms": HttpChannel("sms", sms.url, "secret-token", timeout_s, "phone")
        if sms
        else UnconfiguredChannel("sms", "SKYPORT_SMS_URL"),
    }


def dispatch(conn: psycopg.Connection, chans: dict, **kw: Any):
    kw.setdefault("backoff", FAST_BACKOFF)
    return dispatch_due(conn, channels=chans, **kw)


def wait_due(conn: psycopg.Connection, key: str, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while conn.execute(
        "SELECT next_retry_at > LOCALTIMESTAMP FROM notification_queue WHERE dedup_key = %s", (key,)
    ).fetchone()[0]:
        assert time.monotonic() < deadline, f"{key} never came due"
        time.sleep(0.05)


def test_dedup_key_makes_one_row_and_one_wake_up(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    with conn.transaction():
        assert enqueue_notification(conn, user, "t", "a", "b", "k-1") is True
        assert enqueue_notification(conn, user, "t", "other", "other", "k-1") is False
        assert enqueue_notification(conn, user, "t", "c", "d", "k-2") is True
    assert conn.execute("SELECT count(*) FROM notification_queue").fetchone()[0] == 2
    assert conn.execute("SELECT title FROM notification_queue WHERE dedup_key='k-1'").fetchone()[0] == "a"
    wakes = conn.execute("SELECT actor, state FROM jobs WHERE dedup_key = %s", (WAKE_KEY,)).fetchall()
    assert wakes == [("dispatch_notifications", "queued")]


def test_a_rolled_back_transaction_leaves_no_notification_and_no_wake_up(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    with pytest.raises(RuntimeError), conn.transaction():
        enqueue_notification(conn, user, "t", "a", "b", "gone")
        raise RuntimeError("app failed")
    assert conn.execute("SELECT count(*) FROM notification_queue").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_in_app_rows_are_sent_and_delivered_in_batches(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    for i in range(250):
        add(conn, user, f"in-app-{i}")
    add(conn, user, "later", not_before=timedelta(hours=1) + _now(conn))
    stats = dispatch(conn, channels(), batch=100)
    assert (stats.sent, stats.batches) == (250, 3)
    r = row(conn, "in-app-7")
    assert r["status"] == "sent" and r["sent_at"] and r["delivered_at"] and r["locked_by"] is None
    assert r["attempts"] == 1 and r["channels_done"] == ["in_app"]
    assert row(conn, "later")["status"] == "pending"  # not due yet


def scalar_of(conn: psycopg.Connection, query: str) -> Any:
    return conn.execute(query).fetchone()[0]


def _now(conn: psycopg.Connection):
    return conn.execute("SELECT LOCALTIMESTAMP").fetchone()[0]


def test_email_goes_over_smtp_with_a_stable_message_id(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "mail-1", send_via=("email", "in_app"))
    add(conn, user, "mail-bad", send_via=("email",), metadata={"email": "not-an-address"})
    add(conn, user, "mail-refused", send_via=("email",), metadata={"email": "gone@example.com"})
    with SmtpSink() as smtp:
        smtp.refuse.add("gone@example.com")
        stats = dispatch(conn, channels(smtp=smtp))
        assert stats.sent == 1 and stats.dead == 2
        [msg] = smtp.messages
    email = conn.execute("SELECT email FROM users WHERE user_id = %s", (user,)).fetchone()[0]
    assert msg["To"] == email and msg["Subject"] == "title mail-1"
    assert msg["Message-ID"].endswith("@notifications.skyport>")
    assert row(conn, "mail-1")["channels_done"] == ["email", "in_app"]
    bad, refused = row(conn, "mail-bad"), row(conn, "mail-refused")
    assert bad["status"] == "dead" and "invalid email address" in bad["last_error"]
    assert refused["status"] == "dead" and "550" in refused["last_error"]
    assert refused["attempts"] == 1  # permanent: dead at once


def test_smtp_down_is_retried_not_dead(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "mail-down", send_via=("email",))
    smtp = SmtpSink()  # never started: connection refused
    dispatch(conn, channels(smtp=smtp))
    r = row(conn, "mail-down")
    assert r["status"] == "failed" and "SMTP 127.0.0.1" in r["last_error"] and r["attempts"] == 1


def test_http_failures_retry_on_the_backoff_schedule_then_die(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "sms-1", send_via=("sms",), max_attempts=3)
    with HttpProvider() as sms:
        sms.plan = [500, "timeout", 500]
        sms.hang_s = 1.5
        errors: list[str] = []
        for attempt in (1, 2, 3):
            wait_due(conn, "sms-1")
            before = _now(conn)
            dispatch(conn, channels(sms=sms, timeout_s=0.5))
            r = row(conn, "sms-1")
            assert r["attempts"] == attempt
            errors.append(r["last_error"])
            if attempt < 3:
                assert r["status"] == "failed", r
                ceiling = min(FAST_BACKOFF.max_s, FAST_BACKOFF.base_s * 2 ** (attempt - 1))
                delay = (r["next_retry_at"] - r["updated_at"]).total_seconds()
                assert ceiling / 2 - 0.01 <= delay <= ceiling + 0.01, (attempt, delay)
                assert r["updated_at"] >= before
                # Not due yet: a dispatch now claims nothing.
                assert dispatch(conn, channels(sms=sms)).claimed == 0
        assert "HTTP 500" in errors[0] and "timed out" in errors[1], errors
        r = row(conn, "sms-1")
        assert r["status"] == "dead" and r["next_retry_at"] is None and "HTTP 500" in r["last_error"]
        assert sms.requests == 3 and sms.received == []
        assert [d["queue_id"] for d in list_dead(conn)] == [
            conn.execute("SELECT queue_id FROM notification_queue WHERE dedup_key='sms-1'").fetchone()[0]
        ]


def test_429_is_retried_after_retry_after_and_4xx_is_dead_at_once(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "sms-429", send_via=("sms",))
    add(conn, user, "sms-400", send_via=("sms",))
    add(conn, user, "sms-nophone", send_via=("sms",), metadata={"phone": ""})
    conn.execute("UPDATE users SET phone = NULL WHERE user_id = %s", (user,))
    conn.execute(
        'UPDATE notification_queue SET metadata = \'{"phone": "+100"}\''
        " WHERE dedup_key IN ('sms-429', 'sms-400')"
    )
    with HttpProvider() as sms:
        sms.plan = [429, 400]
        dispatch(conn, channels(sms=sms))
        a, b, c = row(conn, "sms-429"), row(conn, "sms-400"), row(conn, "sms-nophone")
        assert a["status"] == "failed" and "HTTP 429" in a["last_error"]
        assert (a["next_retry_at"] - a["updated_at"]).total_seconds() >= 1.0 - 0.01  # Retry-After: 1
        assert b["status"] == "dead" and "HTTP 400" in b["last_error"] and b["attempts"] == 1
        assert c["status"] == "dead" and "no phone number" in c["last_error"]
        wait_due(conn, "sms-429")
        dispatch(conn, channels(sms=sms))
        assert row(conn, "sms-429")["status"] == "sent"
        assert sms.received == ["sms-429:sms"]
        assert sms.headers[0]["Authorization"] == "Bearer secret-token"
        assert sms.bodies[0]["to"] == "+100" and sms.bodies[0]["title"] == "title sms-429"


@pytest.mark.parametrize(
    ("retry_after", "least_s", "most_s"),
    [("nan", 0.0, DEFAULT_THROTTLE_S), ("in 4 s", 2.0, 4.0)],  # no number of seconds; an HTTP date
)
def test_a_429_holds_the_channel_for_a_retry_after_of_any_form(
    conn: psycopg.Connection, retry_after: str, least_s: float, most_s: float
) -> None:
    user = make_user(conn)
    add(conn, user, "sms-held", send_via=("sms",), metadata={"phone": "+100"})
    if retry_after == "in 4 s":
        retry_after = email.utils.formatdate(time.time() + 4, usegmt=True)
    with HttpProvider() as sms:
        sms.plan, sms.retry_after = [429], retry_after
        chans = channels(sms=sms)
        chans["sms"] = ThrottledChannel(chans["sms"], None)
        dispatch(conn, chans)
        r = row(conn, "sms-held")
        assert r["status"] == "failed" and "HTTP 429" in r["last_error"], r["last_error"]
        held_s = conn.execute("SELECT extract(epoch FROM next_at - now()) FROM flow_rates").fetchone()[0]
        assert least_s < held_s <= most_s


def test_unconfigured_and_unknown_channels_fail_the_row_not_the_dispatcher(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "no-smtp", send_via=("email",))
    add(conn, user, "fax", send_via=("fax",))
    add(conn, user, "fine", send_via=("in_app",))
    stats = dispatch(conn, channels())
    assert stats.sent == 1
    nosmtp, fax = row(conn, "no-smtp"), row(conn, "fax")
    assert nosmtp["status"] == "failed"
    assert "'email' is not configured (SKYPORT_SMTP_HOST is not set)" in nosmtp["last_error"]
    assert fax["status"] == "dead" and "unknown channel 'fax'" in fax["last_error"]


def test_a_retry_after_a_partial_failure_does_not_resend_the_delivered_channel(
    conn: psycopg.Connection,
) -> None:
    user = make_user(conn)
    add(conn, user, "both", send_via=("email", "sms"))
    with SmtpSink() as smtp, HttpProvider() as sms:
        sms.plan = [503]
        dispatch(conn, channels(smtp=smtp, sms=sms))
        r = row(conn, "both")
        assert r["status"] == "failed" and r["channels_done"] == ["email"]
        wait_due(conn, "both")
        dispatch(conn, channels(smtp=smtp, sms=sms))
        assert row(conn, "both")["status"] == "sent"
        assert len(smtp.messages) == 1 and sms.received == ["both:sms"]


def test_an_expired_lease_makes_the_row_claimable_again(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "orphan", max_attempts=3)
    add(conn, user, "orphan-last", max_attempts=1)
    # A dispatcher claims both and dies (never finishes them).
    assert len(claim_due(conn, "ghost:1", 10, lease_s=0.2)) == 2
    assert dispatch(conn, channels()).claimed == 0  # leased: nobody else takes them
    time.sleep(0.3)  # let the lease pass (the lease length is what is under test)
    stats = dispatch(conn, channels())
    assert stats.reaped == {"failed": 1, "dead": 1} and stats.sent == 1
    assert row(conn, "orphan")["status"] == "sent" and row(conn, "orphan")["attempts"] == 2
    last = row(conn, "orphan-last")
    assert last["status"] == "dead" and "lease of ghost:1 expired" in last["last_error"]


def test_a_late_finish_by_a_dispatcher_that_lost_its_lease_changes_nothing(conn: psycopg.Connection) -> None:
    from jobs.notifications.queue import mark_sent

    user = make_user(conn)
    add(conn, user, "contested")
    [claimed] = claim_due(conn, "slow:1", 10, lease_s=0.1)
    time.sleep(0.2)
    dispatch(conn, channels(), worker="fast:2")
    assert mark_sent(conn, "slow:1", [claimed.queue_id]) == set()
    assert row(conn, "contested")["status"] == "sent"


def test_ops_retry_of_a_dead_row_resets_attempts_and_is_audited(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    add(conn, user, "dead-1", send_via=("sms",))
    add(conn, user, "alive", send_via=("in_app",))
    with HttpProvider() as sms:
        sms.plan = [404]
        dispatch(conn, channels(sms=sms))
        assert row(conn, "dead-1")["status"] == "dead"
        ids = [r["queue_id"] for r in list_dead(conn)]
        alive_id = scalar_of(conn, "SELECT queue_id FROM notification_queue WHERE dedup_key='alive'")
        assert retry_dead(conn, [*ids, alive_id], performed_by="ops:alice") == ids
        r = row(conn, "dead-1")
        assert (r["status"], r["attempts"]) == ("pending", 0)
        audit = conn.execute(
            "SELECT table_name, record_id, performed_by FROM audit_log WHERE table_name='notification_queue'"
        ).fetchall()
        assert audit == [("notification_queue", str(ids[0]), "ops:alice")]
        assert conn.execute("SELECT count(*) FROM jobs WHERE dedup_key = %s", (WAKE_KEY,)).fetchone()[0] == 1
        dispatch(conn, channels(sms=sms))
        assert row(conn, "dead-1")["status"] == "sent" and sms.received == ["dead-1:sms"]


def test_four_concurrent_dispatchers_send_2000_rows_exactly_once(database_url: str, conn) -> None:
    users = [make_user(conn) for _ in range(20)]
    conn.execute(
        """
        INSERT INTO notification_queue (user_id, notification_type, dedup_key, title, message, send_via)
        SELECT (%s::uuid[])[1 + g %% 20], 'bulk', 'bulk-' || g, 't', 'm', ARRAY['sms', 'in_app']
          FROM generate_series(1, 2000) g
        """,
        (users,),
    )
    errors: list[BaseException] = []
    with HttpProvider() as sms:

        def run(n: int) -> None:
            try:
                with psycopg.connect(database_url, autocommit=True) as c:
                    while dispatch(c, channels(sms=sms, timeout_s=5), batch=50, worker=f"d{n}").claimed:
                        pass
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        assert sms.duplicates() == {}
        assert len(sms.received) == 2000 and len(set(sms.received)) == 2000
    counts = dict(conn.execute("SELECT status, count(*) FROM notification_queue GROUP BY status").fetchall())
    assert counts == {"sent": 2000}
    # Each row claimed once: no claim was lost or repeated.
    assert conn.execute("SELECT min(attempts), max(attempts) FROM notification_queue").fetchone() == (1, 1)


def test_rows_the_lease_cannot_cover_are_given_back_not_sent_late(conn: psycopg.Connection) -> None:
    user = make_user(conn)
    for i in range(5):
        add(conn, user, f"slow-{i}", send_via=("sms",))
    with HttpProvider() as sms:
        sms.delay_s = 0.3
        # Each row may take its 0.5 s timeout + 1 s margin: a 2 s lease covers the first rows only.
        stats = dispatch(conn, channels(sms=sms, timeout_s=0.5), batch=5, lease_s=2.0)
        assert stats.released >= 3 and stats.sent == 5, stats
        assert sorted(sms.received) == [f"slow-{i}:sms" for i in range(5)]
    # A row given back did not use an attempt.
    assert conn.execute("SELECT min(attempts), max(attempts) FROM notification_queue").fetchone() == (1, 1)


def test_a_wake_up_while_the_dispatch_job_runs_enqueues_a_follow_up(conn: psycopg.Connection) -> None:
    from jobs.notifications.queue import WAKE_FOLLOWUP_KEY
    from workers import ledger

    user = make_user(conn)
    enqueue_notification(conn, user, "t", "a", "b", "first")
    job_id = scalar_of(conn, f"SELECT id FROM jobs WHERE dedup_key = '{WAKE_KEY}'")
    # That dispatch job is running (it may have made its last claim before the next row commits).
    assert ledger.job_start(conn, job_id, "test-worker", "message-1") is not None
    enqueue_notification(conn, user, "t", "a", "b", "second")
    enqueue_notification(conn, user, "t", "a", "b", "third")
    assert conn.execute("SELECT dedup_key, state FROM jobs ORDER BY id").fetchall() == [
        (WAKE_KEY, "running"),
        (WAKE_FOLLOWUP_KEY, "queued"),
    ]
