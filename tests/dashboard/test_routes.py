"""The dashboard over the ASGI test client, against real PostgreSQL and Redis: every page renders
with data, every action changes exactly what it says, auth, CSRF and roles are enforced."""

from __future__ import annotations

import html
from collections.abc import Callable

import psycopg
from starlette.testclient import TestClient

import tests.actors  # noqa: F401 - the `remember` actor
from tests.dashboard.conftest import ADMIN_PASSWORD, csrf_of
from workers import enqueue
from workers.enqueue import wait_until_sent

XSS = "<script>alert('pwned')</script>"


def _state(conn: psycopg.Connection, job_id: int) -> str:
    return conn.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def _audit(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        "SELECT performed_by, reason, table_name, record_id, action FROM audit_log ORDER BY audit_id"
    ).fetchall()


def _post(client: TestClient, url: str, **form: object) -> object:
    token = csrf_of(client.get("/jobs").text)
    return client.post(url, data={"csrf_token": token, **form})


# ---- pages ------------------------------------------------------------------------------------


def test_every_page_renders_with_data(admin: TestClient, dead_job: Callable[..., int], conn) -> None:
    dead = dead_job("parcel-17", error="carrier timeout", attempts=2)
    queued = enqueue("remember", ["queued-one"], dedup_key="order:42").id
    pages = {
        "/": ["Jobs by state", "dead", "Activity", "<svg", "time (UTC)", "Workers", "Scheduler", "went dead"],
        "/jobs": [f'href="/jobs/{dead}"', f'href="/jobs/{queued}"', "parcel-17", "order:42"],
        f"/jobs/{dead}": ["carrier timeout", "Traceback", "w-test", "parcel-17", "2 of 2"],
        "/periodic": ["Periodic jobs", "Run now"],
        "/failures": ["Failures", "carrier timeout", "Retry all of these"],
        "/queues": ["Job families"],
        "/audit": ["Audit log"],
    }
    for path, expected in pages.items():
        response = admin.get(path)
        assert response.status_code == 200, (path, response.text[-500:])
        for text in expected:
            assert text in response.text, (path, text)


def test_jobs_list_filters_and_keyset_pages(admin: TestClient, dead_job, conn) -> None:
    ids = [enqueue("remember", [f"item-{i}"]).id for i in range(7)]
    dead = dead_job("needle-in-args")
    keyed = enqueue("remember", ["k"], dedup_key="invoice:9").id

    def listed(query: str) -> list[int]:
        response = admin.get(f"/api/jobs?{query}")
        assert response.status_code == 200, response.text
        return [j["id"] for j in response.json()["jobs"]]

    assert listed("state=dead") == [dead]
    assert listed("state=queued&actor=remember") == [keyed, *reversed(ids)]
    assert listed("queue=default&dedup_key=invoice:9") == [keyed]
    assert listed("text=needle") == [dead]
    assert listed(f"text={ids[3]}") == [ids[3]]
    assert listed("since=2000-01-01T00:00:00%2B00:00&until=2000-01-02T00:00:00%2B00:00") == []
    assert listed("actor=nobody") == []
    # Keyset pages of 3: every job exactly once, newest first.
    seen, before = [], ""
    while True:
        page = admin.get(f"/api/jobs?limit=3{before}").json()
        seen += [j["id"] for j in page["jobs"]]
        if page["next_before"] is None:
            break
        before = f"&before={page['next_before']}"
    assert seen == sorted([*ids, dead, keyed], reverse=True)
    # The HTML list links to the next page, keeping the filter.
    assert "older" not in admin.get("/jobs?state=queued").text  # 8 rows fit on one page of 50
    assert admin.get("/api/jobs?state=bogus").status_code == 400


def test_script_payload_in_arguments_and_errors_is_escaped(admin: TestClient, dead_job) -> None:
    job = dead_job(XSS, error=XSS)
    for path in ("/jobs", f"/jobs/{job}", "/jobs?state=dead"):
        body = admin.get(path).text
        assert "<script>alert" not in body, path
        assert "&lt;script&gt;alert" in body, path
    assert XSS in html.unescape(admin.get(f"/jobs/{job}").text)


# ---- auth -------------------------------------------------------------------------------------


def test_nothing_without_login(anonymous: TestClient, dead_job) -> None:
    job = dead_job("x")
    for path in ("/", "/jobs", f"/jobs/{job}", "/periodic", "/queues", "/audit"):
        response = anonymous.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/login?next="), path
    for path in ("/api/overview", "/api/jobs", f"/api/jobs/{job}", "/api/periodic", "/api/audit"):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.post(f"/api/jobs/{job}/retry", json={}).status_code == 401
    assert anonymous.post(f"/jobs/{job}/retry", data={}).status_code == 303
    assert anonymous.get("/healthz").status_code == 200
    assert anonymous.get("/static/style.css").status_code == 200


def test_login_sets_a_signed_httponly_samesite_cookie_and_rejects_bad_passwords(
    anonymous: TestClient,
) -> None:
    token = csrf_of(anonymous.get("/login").text)
    bad = anonymous.post("/login", data={"username": "ann", "password": "nope", "csrf_token": token})
    assert bad.status_code == 401 and "wrong user or password" in bad.text
    good = anonymous.post(
        "/login", data={"username": "ann", "password": ADMIN_PASSWORD, "csrf_token": token, "next": "/jobs"}
    )
    assert good.status_code == 303 and good.headers["location"] == "/jobs"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert anonymous.get("/jobs").status_code == 200
    # A tampered cookie is no login.
    value = anonymous.cookies.get("skyport_session")
    anonymous.cookies.set("skyport_session", value[:-4] + ("AAAA" if not value.endswith("AAAA") else "BBBB"))
    assert anonymous.get("/jobs").status_code == 303


def test_login_is_rate_limited(anonymous: TestClient) -> None:
    token = csrf_of(anonymous.get("/login").text)
    for _ in range(5):
        assert (
            anonymous.post(
                "/login", data={"username": "ann", "password": "x", "csrf_token": token}
            ).status_code
            == 401
        )
    blocked = anonymous.post(
        "/login", data={"username": "ann", "password": ADMIN_PASSWORD, "csrf_token": token}
    )
    assert blocked.status_code == 429 and "too many failed logins" in blocked.text
    assert (
        anonymous.post("/api/login", json={"username": "ann", "password": ADMIN_PASSWORD}).status_code == 429
    )


def test_state_changes_need_the_csrf_token(admin: TestClient, dead_job, conn) -> None:
    job = dead_job("csrf")
    assert admin.post(f"/jobs/{job}/retry", data={}).status_code == 403
    assert admin.post(f"/jobs/{job}/retry", data={"csrf_token": "forged"}).status_code == 403
    assert admin.post(f"/api/jobs/{job}/retry", json={}).status_code == 403
    assert admin.get(f"/jobs/{job}/retry").status_code in (404, 405)  # no state change on GET
    assert _state(conn, job) == "dead" and _audit(conn) == []


def test_readonly_sees_everything_and_changes_nothing(readonly: TestClient, dead_job, conn) -> None:
    job = dead_job("ro")
    for path in ("/", "/jobs", f"/jobs/{job}", "/periodic", "/queues", "/audit", "/api/jobs"):
        assert readonly.get(path).status_code == 200, path
    assert "Retry" not in readonly.get(f"/jobs/{job}").text
    token = csrf_of(readonly.get("/jobs").text)
    for url, form in (
        (f"/jobs/{job}/retry", {}),
        (f"/jobs/{job}/delete", {}),
        ("/jobs/bulk", {"verb": "retry", "ids": [str(job)]}),
        ("/jobs/bulk", {"verb": "retry", "scope": "filter"}),
    ):
        response = readonly.post(url, data={"csrf_token": token, **form})
        assert response.status_code == 403 and "read-only" in response.text, url
    api_token = readonly.get("/api/me").json()["csrf_token"]
    assert readonly.post(f"/api/jobs/{job}/retry", headers={"X-CSRF-Token": api_token}).status_code == 403
    entry = readonly.get("/api/periodic").json()["entries"][0]["name"]
    assert readonly.post(f"/periodic/{entry}/disable", data={"csrf_token": token}).status_code == 403
    assert _state(conn, job) == "dead" and _audit(conn) == []


# ---- actions ----------------------------------------------------------------------------------


def test_retry_one_is_idempotent_keeps_history_and_is_audited(admin: TestClient, dead_job, conn) -> None:
    job = dead_job("retry-me", attempts=3)
    other = dead_job("leave-me")
    first = _post(admin, f"/jobs/{job}/retry")
    assert first.status_code == 303 and first.headers["location"] == f"/jobs/{job}"
    assert "retried 1 job" in admin.get(f"/jobs/{job}").text
    again = _post(admin, f"/jobs/{job}/retry")  # the double click
    assert again.status_code == 303
    assert "retried 0 jobs; 1 job not dead or cancelled" in admin.get(f"/jobs/{job}").text
    assert _state(conn, job) == "queued" and _state(conn, other) == "dead"
    assert conn.execute("SELECT count(*) FROM job_attempts WHERE job_id = %s", (job,)).fetchone()[0] == 3
    assert _audit(conn) == [("ops:ann", "retry", "jobs", str(job), "UPDATE")]
    page = admin.get(f"/jobs/{job}").text
    assert "retry by ops:ann at" in page and "after attempt 3" in page


def test_bulk_retry_selected_and_all_dead_matching_a_filter(admin: TestClient, dead_job, conn) -> None:
    a, b, c = (dead_job(f"bulk-{i}") for i in range(3))
    queued = enqueue("remember", ["still-queued"]).id
    response = _post(admin, "/jobs/bulk", verb="retry", ids=[str(a), str(queued)], back="/jobs?state=dead")
    assert response.headers["location"] == "/jobs?state=dead"
    assert "retried 1 job; 1 job not dead" in admin.get("/jobs?state=dead").text
    assert (_state(conn, a), _state(conn, b), _state(conn, c)) == ("queued", "dead", "dead")
    conn.execute('UPDATE jobs SET kwargs = \'{"tag": "north"}\' WHERE id = %s', (b,))
    _post(admin, "/jobs/bulk", verb="retry", scope="filter", text="north")
    assert (_state(conn, b), _state(conn, c)) == ("queued", "dead")  # only what the filter matched
    _post(admin, "/jobs/bulk", verb="retry", scope="filter", actor="remember")
    assert _state(conn, c) == "queued"
    _post(admin, "/jobs/bulk", verb="retry", scope="filter", back="/jobs")
    assert "no dead job matches the filter: nothing retried" in admin.get("/jobs").text
    assert [r[1] for r in _audit(conn)] == ["retry", "retry", "retry"]


def test_cancel_and_delete_change_only_what_they_may(admin: TestClient, dead_job, conn) -> None:
    queued = enqueue("remember", ["cancel-me"]).id
    later = enqueue("remember", ["later"], delay=3600).id
    dead = dead_job("delete-me")
    _post(admin, "/jobs/bulk", verb="cancel", ids=[str(queued), str(later), str(dead)])
    assert (_state(conn, queued), _state(conn, later), _state(conn, dead)) == (
        "cancelled",
        "cancelled",
        "dead",
    )
    _post(admin, f"/jobs/{dead}/delete")
    assert conn.execute("SELECT count(*) FROM jobs WHERE id = %s", (dead,)).fetchone()[0] == 0
    running = enqueue("remember", ["not-finished"]).id
    _post(admin, f"/jobs/{running}/delete")
    assert _state(conn, running) == "queued"
    verbs = [(r[1], r[3], r[4]) for r in _audit(conn)]
    assert verbs == [
        ("cancel", str(queued), "UPDATE"),
        ("cancel", str(later), "UPDATE"),
        ("delete", str(dead), "DELETE"),
    ]
    assert f"job {dead}" in admin.get("/audit").text


def test_periodic_run_now_and_switch_are_persisted_and_audited(admin: TestClient, conn) -> None:
    entries = admin.get("/api/periodic").json()["entries"]
    name = entries[0]["name"]
    _post(admin, f"/periodic/{name}/disable")
    assert conn.execute(
        "SELECT enabled, changed_by FROM schedule_overrides WHERE name = %s", (name,)
    ).fetchone() == (
        False,
        "ops:ann",
    )
    assert "off (ops)" in admin.get("/periodic").text
    _post(admin, f"/periodic/{name}/enable")
    _post(admin, f"/periodic/{name}/run")
    assert conn.execute("SELECT count(*) FROM jobs WHERE enqueued_by = 'ops:ann'").fetchone()[0] == 1
    assert [r[1] for r in _audit(conn)] == ["disable", "enable", "run now"]
    assert _post(admin, "/periodic/no-such-entry/run").status_code == 404


def test_json_api_for_scripts(anonymous: TestClient, dead_job, conn) -> None:
    job = dead_job("api")
    login = anonymous.post("/api/login", json={"username": "ann", "password": ADMIN_PASSWORD})
    assert login.status_code == 200 and login.json()["role"] == "admin"
    token = login.json()["csrf_token"]
    detail = anonymous.get(f"/api/jobs/{job}").json()
    assert detail["state"] == "dead" and detail["history"][0]["error"] == "boom"
    assert anonymous.get("/api/overview").json()["counts"]["dead"] == 1
    assert anonymous.post(f"/api/jobs/{job}/retry", json={}).status_code == 403  # no token
    done = anonymous.post(f"/api/jobs/{job}/retry", headers={"X-CSRF-Token": token}).json()
    assert done["changed"] == [job] and _state(conn, job) == "queued"
    again = anonymous.post(f"/api/jobs/{job}/retry", headers={"X-CSRF-Token": token}).json()
    assert again["changed"] == [] and again["skipped"] == [job]
    other = dead_job("api-2")
    by_filter = anonymous.post(
        "/api/jobs/retry", json={"filter": {"text": "api-2"}}, headers={"X-CSRF-Token": token}
    )
    assert by_filter.json()["changed"] == [other]
    assert anonymous.get("/api/audit").json()["entries"][0]["verb"] == "retry"
    assert anonymous.get("/api/jobs/999999").status_code == 404


def test_a_double_click_runs_an_entry_once(admin: TestClient, conn) -> None:
    name = admin.get("/api/periodic").json()["entries"][0]["name"]
    page = admin.get("/periodic").text
    token = csrf_of(page)
    form = {"csrf_token": token, "request_id": "click-1"}
    first = admin.post(f"/periodic/{name}/run", data=form, headers={"referer": "http://testserver/periodic"})
    second = admin.post(f"/periodic/{name}/run", data=form, headers={"referer": "http://testserver/periodic"})
    assert first.status_code == second.status_code == 303 and second.headers["location"] == "/periodic"
    assert "already done" in admin.get("/periodic").text
    assert conn.execute("SELECT count(*) FROM jobs WHERE enqueued_by = 'ops:ann'").fetchone()[0] == 1
    api_token = admin.get("/api/me").json()["csrf_token"]
    headers = {"X-CSRF-Token": api_token, "Idempotency-Key": "script-run-7"}
    assert admin.post(f"/api/periodic/{name}/run", headers=headers).status_code == 200
    assert admin.post(f"/api/periodic/{name}/run", headers=headers).status_code == 409
    assert conn.execute("SELECT count(*) FROM jobs WHERE enqueued_by = 'ops:ann'").fetchone()[0] == 2
    assert 'name="request_id"' in page


def test_pages_forbid_framing_and_foreign_scripts(admin: TestClient) -> None:
    headers = admin.get("/jobs").headers
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert admin.get("/login").headers["x-frame-options"] == "DENY"


def test_machine_paths_skip_the_session_and_the_page_headers(anonymous: TestClient) -> None:
    """Probes, metrics and webhooks are served without the dashboard's session and login layer."""
    for response in (
        anonymous.get("/healthz"),
        anonymous.post("/webhooks/payments/nobody", content=b"{}"),  # 404: no secret for it
        anonymous.get("/webhooks/payments/nobody"),  # 405: POST only
    ):
        assert response.status_code in (200, 404, 405), response.text
        assert "set-cookie" not in response.headers and "x-frame-options" not in response.headers
    assert anonymous.get("/webhooks/payments/nobody").json() == {"error": "Method Not Allowed"}
    assert "x-frame-options" in anonymous.get("/login").headers


def test_login_never_redirects_off_site(anonymous: TestClient) -> None:
    token = csrf_of(anonymous.get("/login").text)
    for target in ("//evil.example/x", "/\\evil.example", "https://evil.example/"):
        response = anonymous.post(
            "/login",
            data={"username": "ann", "password": ADMIN_PASSWORD, "csrf_token": token, "next": target},
        )
        assert response.headers["location"] == "/", target
        token = csrf_of(anonymous.get("/login").text)  # the login started a new session


def test_overview_ranges_read_the_rollup(admin: TestClient, dead_job: Callable[..., int], conn) -> None:
    from workers import stats

    dead_job("parcel-21", error="carrier timeout", attempts=2)
    stats.roll_up(conn)
    for range_key, buckets in (("1h", 60), ("24h", 96), ("7d", 168)):
        page = admin.get(f"/?range={range_key}&actor=remember")
        assert page.status_code == 200 and page.text.count('<svg class="chart"') == 4, range_key
        body = admin.get(f"/api/overview?range={range_key}&queue=default").json()["stats"]
        assert len(body["points"]) == buckets
        assert sum(p["failed"] for p in body["points"]) == 2
        assert body["by_actor"]["remember"]["failed"] == 2
    assert admin.get("/api/overview?range=30d").json()["field"] == "range"


def test_overview_says_how_long_the_oldest_message_waited(admin: TestClient) -> None:
    enqueue("remember", ["waiting"])  # no worker: the message waits in Redis
    assert wait_until_sent()  # enqueue returned at its commit; the message follows
    queues = {q["queue"]: q for q in admin.get("/api/overview").json()["queues"]}
    assert queues["default"]["depth"] == 1 and queues["default"]["oldest_age_s"] is not None
    page = admin.get("/").text
    assert "oldest waiting for" in page
