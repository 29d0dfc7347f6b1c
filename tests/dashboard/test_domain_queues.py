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
    assert "audit_log" in tables and "partition coverage" in page.text


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
    ).fetchall() == [("ann", "refresh now", view)]


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
