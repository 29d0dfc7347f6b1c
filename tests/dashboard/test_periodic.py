""" "Run now" is the entry's last run, on the periodic page, in its JSON and in `skyport schedule list`;
the scheduler's catch-up after a restart still goes by the scheduled ticks only."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from starlette.testclient import TestClient

from scheduler import schedule, state
from skyport.main import main as skyport
from tests.dashboard.conftest import csrf_of
from workers import enqueue


def _run_now(admin: TestClient, name: str) -> int:
    token = csrf_of(admin.get("/periodic").text)
    response = admin.post(f"/periodic/{name}/run", data={"csrf_token": token})
    assert response.status_code == 303
    return _newest_job(admin, name)


def _newest_job(admin: TestClient, name: str) -> int:
    entry = next(e for e in admin.get("/api/periodic").json()["entries"] if e["name"] == name)
    return entry["last"]["id"]


def test_run_now_is_the_entrys_last_run_on_the_page_and_the_command_line(
    admin: TestClient, conn: psycopg.Connection, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "notifications_dispatch"
    tick = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    ticked = enqueue(
        "dispatch_notifications", dedup_key=schedule.tick_key(name, tick), enqueued_by=f"scheduler:{name}"
    ).id
    entry = next(e for e in admin.get("/api/periodic").json()["entries"] if e["name"] == name)
    assert entry["last"]["id"] == ticked and entry["last"]["manual"] is False

    job_id = _run_now(admin, name)
    assert job_id > ticked
    conn.execute(
        "UPDATE jobs SET state = 'dead', finished_at = now(), last_error = 'boom' WHERE id = %s", (job_id,)
    )
    last = next(e for e in admin.get("/api/periodic").json()["entries"] if e["name"] == name)["last"]
    assert last["id"] == job_id and last["manual"] is True and last["enqueued_by"] == "ops:ann"
    assert last["state"] == "dead" and last["last_error"] == "boom"
    page = admin.get("/periodic").text
    assert f'href="/jobs/{job_id}"' in page and "run now by ops:ann" in page

    assert skyport(["schedule", "list", "--json"]) == 0
    row = next(r for r in json.loads(capsys.readouterr().out) if r["name"] == name)
    assert row["last_job_id"] == job_id and row["last_by"] == "run now: ops:ann"
    assert row["last_outcome"] == "dead: boom"
    assert skyport(["schedule", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    line = next(line for line in table if line.startswith(name))
    assert "run now: ops:ann" in line and "dead: boom" in line

    # The scheduler's catch-up looks at ticks only: a run now does not hide missed ticks.
    assert state.last_ticks(conn, [name])[name]["id"] == ticked
    assert state.last_ticks(conn, [name])[name]["fire_time"] == tick
