"""The failures page: dead jobs grouped by error (digits folded), and "retry all of these" for one
group, admin only, audited per job."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from starlette.testclient import TestClient

from tests.dashboard.conftest import csrf_of


def test_dead_jobs_grouped_by_error_and_one_group_retried(
    admin: TestClient, readonly: TestClient, dead_job: Callable[..., int], conn: psycopg.Connection
) -> None:
    timeouts = [
        dead_job(f"parcel-{n}", error=f"ConnectionError: carrier timeout for parcel {n}")
        for n in (17, 18, 19)
    ]
    other = dead_job("addr", error="ValueError: no such address")

    groups = admin.get("/api/failures").json()["groups"]
    assert [(g["jobs"], g["error_group"]) for g in groups] == [
        (3, "ConnectionError: carrier timeout for parcel #"),
        (1, "ValueError: no such address"),
    ]
    page = admin.get("/failures").text
    assert (
        "ConnectionError" in page and "carrier timeout for parcel #" in page and "Retry all of these" in page
    )
    assert "Retry all of these" not in readonly.get("/failures").text

    form = {"csrf_token": csrf_of(page), "error_group": groups[0]["error_group"]}
    assert (
        readonly.post(
            "/failures/retry", data={**form, "csrf_token": csrf_of(readonly.get("/failures").text)}
        ).status_code
        == 403
    )
    answer = admin.post("/failures/retry", data=form)
    assert answer.status_code == 303 and answer.headers["location"] == "/failures"
    states = dict(
        conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", ([*timeouts, other],)).fetchall()
    )
    assert [states[i] for i in timeouts] == ["queued"] * 3 and states[other] == "dead"
    audited = conn.execute(
        "SELECT record_id FROM audit_log WHERE reason = 'retry' ORDER BY record_id"
    ).fetchall()
    assert sorted(int(r[0]) for r in audited) == sorted(timeouts)
    # Nothing left in the group: a second post retries nothing.
    again = admin.post("/failures/retry", data={**form, "csrf_token": csrf_of(admin.get("/failures").text)})
    assert again.status_code == 303
    assert conn.execute("SELECT count(*) FROM audit_log WHERE reason = 'retry'").fetchone()[0] == 3
