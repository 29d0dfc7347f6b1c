"""The console's flow control: the queue and actor table, pause/resume/limit as admin (audited),
refused to a read-only user, bad input a 4xx naming the field."""

from __future__ import annotations

import psycopg
from starlette.testclient import TestClient

from tests.dashboard.conftest import csrf_of


def _api(client: TestClient, url: str, body: dict | None = None):
    token = client.get("/api/me").json()["csrf_token"]
    return client.post(url, json=body or {}, headers={"X-CSRF-Token": token})


def test_pause_resume_and_limit_through_the_api_are_persisted_and_audited(
    admin: TestClient, conn: psycopg.Connection
) -> None:
    response = _api(admin, "/api/queues/default/pause", {"reason": "carrier down"})
    assert response.status_code == 200, response.text
    row = conn.execute(
        "SELECT paused, paused_reason, paused_by FROM flow_controls WHERE name = 'default'"
    ).fetchone()
    assert row == (True, "carrier down", "ops:ann")  # the audit log's naming
    queues = {r["queue"]: r for r in admin.get("/api/flow").json()["queues"]}
    assert queues["default"]["paused"] and queues["default"]["paused_reason"] == "carrier down"
    assert _api(admin, "/api/queues/default/limit", {"concurrency": 4}).status_code == 200
    assert _api(admin, "/api/actors/remember/pause").status_code == 200
    assert _api(admin, "/api/queues/default/resume").json()["message"].startswith("queue default: resumed")
    assert conn.execute(
        "SELECT paused, concurrency FROM flow_controls WHERE name = 'default'"
    ).fetchone() == (
        False,
        4,
    )
    audit = conn.execute("SELECT performed_by, reason, record_id FROM audit_log ORDER BY audit_id").fetchall()
    assert audit == [
        ("ops:ann", "pause", "queue:default"),
        ("ops:ann", "limit", "queue:default"),
        ("ops:ann", "pause", "actor:remember"),
        ("ops:ann", "resume", "queue:default"),
    ]


def test_the_queues_page_shows_the_table_and_its_buttons_work(admin: TestClient, conn) -> None:
    page = admin.get("/queues")
    assert page.status_code == 200 and "Queues and actors" in page.text
    assert 'action="/queues/default/pause"' in page.text
    response = admin.post(
        "/queues/default/pause", data={"csrf_token": csrf_of(page.text), "reason": "deploy"}
    )
    assert response.status_code == 303
    page = admin.get("/queues")
    assert "paused</span>" in page.text and "deploy" in page.text
    assert 'action="/queues/default/resume"' in page.text
    admin.post("/queues/default/limit", data={"csrf_token": csrf_of(page.text), "concurrency": "2"})
    page = admin.get("/queues")
    assert "Clear limit" in page.text
    admin.post("/queues/default/limit", data={"csrf_token": csrf_of(page.text), "none": "1"})
    assert conn.execute("SELECT concurrency FROM flow_controls WHERE name = 'default'").fetchone() == (None,)


def test_read_only_users_and_bad_input_change_nothing(readonly: TestClient, admin: TestClient, conn) -> None:
    assert _api(readonly, "/api/queues/default/pause").status_code == 403
    assert _api(admin, "/api/queues/nope/pause").status_code == 404
    bad = _api(admin, "/api/queues/default/limit", {"concurrency": 0})
    assert bad.status_code == 400 and bad.json()["field"] == "concurrency"
    bad = _api(admin, "/api/queues/default/limit", {})
    assert bad.status_code == 400 and bad.json()["field"] == "concurrency"
    bad = _api(admin, "/api/queues/default/limit", {"concurrency": 5, "none": True})  # which one?
    assert bad.status_code == 400 and bad.json()["field"] == "none"
    assert _api(admin, "/api/queues/default/explode").status_code == 404
    not_paused = _api(admin, "/api/queues/default/resume").json()
    assert not_paused["changed"] == [] and not_paused["skipped"] == ["default"]
    assert conn.execute("SELECT count(*) FROM flow_controls").fetchone()[0] == 0


def test_a_held_job_says_what_it_waits_for_on_its_page(admin: TestClient, conn) -> None:
    from workers import enqueue

    job_id = enqueue("remember", ["held"], conn=conn).id
    conn.execute("UPDATE jobs SET waiting_for = 'slot', priority = 3 WHERE id = %s", (job_id,))
    page = admin.get(f"/jobs/{job_id}").text
    assert "waiting for a slot" in page and "priority 3" in page
    assert admin.get(f"/api/jobs/{job_id}").json()["waiting_for"] == "slot"


def test_a_paused_job_does_not_age_the_oldest_queued_metric(anonymous: TestClient, conn) -> None:
    from workers import enqueue

    waiting = enqueue("remember", ["waits"], conn=conn).id
    held = enqueue("remember", ["held"], conn=conn).id
    conn.execute("UPDATE jobs SET eta = now() - interval '60 seconds' WHERE id = %s", (waiting,))
    conn.execute(
        "UPDATE jobs SET eta = now() - interval '1 day', waiting_for = 'paused' WHERE id = %s", (held,)
    )
    line = next(
        line
        for line in anonymous.get("/metrics").text.splitlines()
        if line.startswith("skyport_oldest_queued")
    )
    assert 59 <= float(line.split()[-1]) < 3600, line  # the paused job's day does not count
