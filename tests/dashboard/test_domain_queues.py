"""The Domain queues page and the overview warnings over the job families' own functions."""

from __future__ import annotations

import psycopg
import pytest
from starlette.testclient import TestClient

from tests.dashboard.conftest import csrf_of


def test_domain_page_shows_each_family_that_exists(admin: TestClient) -> None:
    page = admin.get("/queues")
    assert page.status_code == 200
    sections = admin.get("/api/queues").json()
    try:
        import jobs.partitions  # noqa: F401
    except ImportError:
        pytest.skip("jobs.partitions does not exist")
    tables = {row["parent"] for row in sections["partition_coverage"]}
    assert "audit_log" in tables and "Partitions ahead" in page.text


def test_refresh_a_materialized_view_now(admin: TestClient, conn: psycopg.Connection) -> None:
    matviews = pytest.importorskip("jobs.matviews")
    view = matviews.staleness(conn)[0].view
    # Never refreshed: stale, and the overview says so.
    assert f"materialized view {view} is stale" in admin.get("/").text
    response = admin.post(
        "/queues/refresh-view", data={"csrf_token": csrf_of(admin.get("/queues").text), "view": view}
    )
    assert response.status_code == 303
    assert f"refresh of {view} requested" in admin.get("/queues").text
    requested = conn.execute(
        "SELECT actor, args, kwargs FROM jobs WHERE actor = 'refresh_matview_requested'"
    ).fetchall()
    assert len(requested) == 1 and view in (requested[0][1] + list(requested[0][2].values()))
    assert conn.execute(
        "SELECT performed_by, reason, record_id FROM audit_log WHERE table_name = 'matview'"
    ).fetchall() == [("ops:ann", "refresh now", view)]


def test_family_actions_need_the_admin_role_and_csrf(readonly: TestClient, admin: TestClient) -> None:
    token = csrf_of(readonly.get("/queues").text)
    assert readonly.post("/queues/refresh-view", data={"csrf_token": token, "view": "x"}).status_code == 403
    assert admin.post("/queues/refresh-view", data={"view": "x"}).status_code == 403
    assert (
        admin.post(
            "/queues/no-such-action", data={"csrf_token": csrf_of(admin.get("/queues").text)}
        ).status_code
        == 400
    )


def _form(admin: TestClient, **fields: object) -> dict[str, object]:
    return {"csrf_token": csrf_of(admin.get("/queues").text), **fields}


def test_replay_an_unmatched_payment_event_and_see_it_from_its_job(admin: TestClient, conn) -> None:
    pytest.importorskip("jobs.payments")
    import jobs.payments.actors  # noqa: F401 - process_payment_event
    from workers import enqueue

    event = conn.execute(
        """INSERT INTO payment_events (provider, event_id, event_type, payload, shipment_id, idempotency_key,
                                       created_at, status, error, processed_at)
           VALUES ('gw', 'evt-<b>1</b>', 'payment.succeeded', '{"data": {"amount": "10.00"}}',
                   gen_random_uuid(), 'idem-1', now(), 'unmatched', 'no such shipment', now())
           RETURNING id"""
    ).fetchone()[0]
    job = enqueue("process_payment_event", [event]).id
    detail = admin.get(f"/jobs/{job}").text
    assert f"payment_events id={event}" in detail and "no such shipment" in detail
    assert "evt-&lt;b&gt;1&lt;/b&gt;" in admin.get("/queues").text
    admin.post("/queues/replay-payment", data=_form(admin, provider="gw", event_id="evt-<b>1</b>"))
    assert "replayed" in admin.get("/queues").text
    assert conn.execute(
        "SELECT status, replayed_by FROM payment_events WHERE id = %s", (event,)
    ).fetchone() == (
        "received",
        "ops:ann",
    )
    admin.post("/queues/replay-payment", data=_form(admin, provider="gw", event_id="evt-<b>1</b>"))
    assert "is not unmatched or rejected: unchanged" in admin.get("/queues").text


def test_retry_dead_notifications(admin: TestClient, conn) -> None:
    notifications = pytest.importorskip("jobs.notifications")
    from demo.families import demo_customer

    user_id, _, _ = demo_customer(conn)
    for i in range(3):
        notifications.enqueue_notification(conn, user_id, "demo", f"t{i}", "m", f"dash-test:{i}", wake=False)
    ids = [r[0] for r in conn.execute("SELECT queue_id FROM notification_queue ORDER BY queue_id").fetchall()]
    conn.execute(
        "UPDATE notification_queue SET status = 'dead', last_error = 'sms down' WHERE queue_id = ANY(%s)",
        (ids[:2],),
    )
    assert "2 dead notification(s)" in admin.get("/").text
    admin.post("/queues/retry-notifications", data=_form(admin, ids=str(ids[0])))
    assert "retried 1 dead notification" in admin.get("/queues").text
    admin.post("/queues/retry-notifications", data=_form(admin, all="1"))
    statuses = conn.execute("SELECT status FROM notification_queue ORDER BY queue_id").fetchall()
    assert [s[0] for s in statuses][:2] == ["pending", "pending"]


def test_domain_page_is_written_for_people(admin: TestClient, conn) -> None:
    """Human headings, no Python values or raw column names, statuses coloured by meaning,
    channels as tags, times relative with the absolute time (and its zone) on hover."""
    notifications = pytest.importorskip("jobs.notifications")
    from demo.families import demo_customer

    user_id, _, _ = demo_customer(conn)
    notifications.enqueue_notification(conn, user_id, "demo", "t", "m", "dash-human:1", wake=False)
    conn.execute("UPDATE notification_queue SET status = 'dead', last_error = 'sms down'")
    page = admin.get("/queues").text
    for raw in ("last_success_finished_at", "staleness_s", "['", "True", "None", "has_default"):
        assert raw not in page, raw
    assert '<span class="badge badge-good">ok</span>' in page  # a partition that is fine is green
    assert 'badge-bad">ok' not in page
    assert "data as of" in page and "Dead notifications" in page
    assert '<span class="tag">' in page
    assert "UTC" in page and "<time " in page
