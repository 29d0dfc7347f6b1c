"""The audit log: one naming for people (`ops:<user>`) and verbs, the client's address on every
action, people's actions apart from the system's, and each target linked to its page."""

from __future__ import annotations

import psycopg
import pytest

from jobs.notifications import enqueue_notification
from tests.dashboard.conftest import make_dead
from tests.dashboard.support import api_login, web_process
from tests.integration.business_rows import make_user

ADDRESS = "203.0.113.7"


def _dead_notification(conn: psycopg.Connection) -> int:
    enqueue_notification(
        conn, make_user(conn), "shipment_update", "t", "m", "audit-dead", send_via=["in_app"], wake=False
    )
    return conn.execute(
        "UPDATE notification_queue SET status = 'dead' WHERE dedup_key = 'audit-dead' RETURNING queue_id"
    ).fetchone()[0]


@pytest.mark.usefixtures("dashboard_env")
def test_every_action_is_named_alike_with_its_address_and_target(conn: psycopg.Connection) -> None:
    job = make_dead(conn, "audited")
    queue_id = _dead_notification(conn)
    # A system row, as the quote expiry writes them.
    conn.execute(
        """INSERT INTO audit_log (table_name, record_id, action, performed_by, reason)
           VALUES ('quotes', 'q-1', 'UPDATE', 'job:expire_quotes', 'expire')"""
    )
    with web_process(ADDRESS) as client:
        headers = {"X-CSRF-Token": api_login(client, "ann")}
        assert client.post(f"/api/jobs/{job}/retry", headers=headers).json()["changed"] == [job]
        retried = client.post("/api/queues/retry-notifications", json={"ids": [queue_id]}, headers=headers)
        assert retried.json()["changed"] == [queue_id]
        assert client.post("/api/periodic/notifications_dispatch/run", headers=headers).status_code == 200
        assert client.post("/api/periodic/notifications_dispatch/disable", headers=headers).status_code == 200

        people = client.get("/api/audit").json()
        assert people["kind"] == "ops"
        entries = people["entries"]
        assert {(e["performed_by"], e["ip"]) for e in entries} == {("ops:ann", ADDRESS)}
        assert [e["verb"] for e in entries] == ["disable", "run now", "retry", "retry"]
        assert [e["target_url"] for e in entries] == ["/periodic", "/periodic", "/queues", f"/jobs/{job}"]

        system = client.get("/api/audit?kind=system").json()["entries"]
        assert [(e["performed_by"], e["verb"], e["target_url"]) for e in system] == [
            ("job:expire_quotes", "expire", None)
        ]
        assert len(client.get("/api/audit?kind=all").json()["entries"]) == 5
        assert client.get("/api/audit?kind=nobody").status_code == 400

        page = client.get("/audit").text
        assert f'<a href="/jobs/{job}">job {job}</a>' in page and '<a href="/queues">' in page
        assert ADDRESS in page and "job:expire_quotes" not in page
        assert "job:expire_quotes" in client.get("/audit?kind=system").text
    # The job's own page names the retry the same way.
    with web_process(ADDRESS) as client:
        api_login(client, "ann")
        assert "retry by ops:ann" in client.get(f"/jobs/{job}").text
