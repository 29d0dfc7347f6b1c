"""The one validation layer: every bad parameter or body is a 400 naming its field (a page for the
pages), never a 500; and nothing is changed by a refused request."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from dashboard import validate
from tests.dashboard.conftest import csrf_of
from tests.dashboard.support import assert_bad_input, fingerprint

HUGE = str(2**63)  # one past the largest bigint


BAD_JOBS_LIST = [
    ("limit=0", "limit"),
    ("limit=501", "limit"),
    ("limit=-1", "limit"),
    ("limit=%C2%B2", "limit"),  # '²': str.isdigit() says yes
    ("limit=%D9%A3", "limit"),  # Arabic-Indic three
    ("limit=1.5", "limit"),
    (f"before={HUGE}", "before"),
    ("before=" + "9" * 400, "before"),
    ("before=0", "before"),
    ("state=bogus", "state"),
    ("actor=a%00b", "actor"),
    ("text=" + "x" * 201, "text"),
    ("since=yesterday", "since"),
    ("since=99999-01-01", "since"),
    ("until=%D9%A3%D9%A3%D9%A3%D9%A3-01-01", "until"),
    ("sate=dead", "sate"),
    ("state=dead&state=queued", "state"),
]
ODD_BUT_VALID = ["text=%C2%B2", f"text={HUGE}", "text=" + "9" * 40, "limit=500", "state=", "text=%25_%5C"]


def test_query_parameters_and_paths(admin: TestClient, dead_job) -> None:
    for query, field in BAD_JOBS_LIST:
        assert_bad_input(admin.get(f"/api/jobs?{query}"), field)
        if not query.startswith("limit"):  # the page has no limit
            page = admin.get(f"/jobs?{query}")
            assert page.status_code == 400 and f"The value of <code>{field}</code>" in page.text, query
    for query in ODD_BUT_VALID:
        assert admin.get(f"/api/jobs?{query}").status_code == 200, query
    # An id in the text box finds the job; digits beyond bigint are searched as text.
    job = dead_job("needle")
    assert [j["id"] for j in admin.get(f"/api/jobs?text={job}").json()["jobs"]] == [job]
    assert admin.get(f"/api/jobs?text={HUGE}").json()["jobs"] == []
    for job_id in (HUGE, "0", "-1", "%C2%B2", "abc", "1e3"):
        assert_bad_input(admin.get(f"/api/jobs/{job_id}"), "job_id")
        page = admin.get(f"/jobs/{job_id}")
        assert page.status_code == 400 and "The value of <code>job_id</code> was refused" in page.text
    for query, field in (("limit=1001", "limit"), ("before=x", "before"), ("page=2", "page")):
        assert_bad_input(admin.get(f"/api/audit?{query}"), field)
    assert admin.get("/audit?before=%C2%B2").status_code == 400
    assert_bad_input(admin.get("/api/overview?refresh=1"), "refresh")


def _post(admin: TestClient, url: str, body: object) -> object:
    token = admin.get("/api/me").json()["csrf_token"]
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return admin.post(
        url, content=content, headers={"X-CSRF-Token": token, "content-type": "application/json"}
    )


BAD_BULK_BODIES = [
    ([1, 2], "body"),
    ("ids", "body"),
    (b"{not json", "body"),
    (b"[" * 100_000 + b"]" * 100_000, "body"),
    (b'{"ids": [1, 2', "body"),
    ({"ids": [True]}, "ids[0]"),
    ({"ids": [1.0]}, "ids[0]"),
    ({"ids": [2**63]}, "ids[0]"),
    ({"ids": [-5]}, "ids[0]"),
    ({"ids": ["٣"]}, "ids[0]"),
    ({"ids": [None, {"a": 1}]}, "ids[1]"),
    ({"idz": [1]}, "idz"),
    ({"filter": "dead"}, "filter"),
    ({"filter": {"state": 3}}, "filter.state"),
    ({"filter": {"text": "a\u0000"}}, "filter.text"),
    ({"filter": {"actor": "\ud800"}}, "filter.actor"),
    ({"filter": {"\ud800": "x"}}, "filter.\\ud800"),
    ({"ids": [1], "filter": {}}, "filter"),
]
BAD_ACTION_BODIES = [
    ("/api/jobs/launch", {"ids": [1]}, "verb"),
    ("/api/jobs/cancel", {"filter": {}}, "filter"),
    ("/api/jobs/1/retry", {"extra": 1}, "extra"),
    ("/api/queues/replay-payment", {"provider": "gw"}, "event_id"),
    ("/api/queues/replay-payment", {"provider": "gw", "event_id": "x" * 256}, "event_id"),
    ("/api/queues/refresh-view", {"view": 42}, "view"),
    ("/api/queues/retry-notifications", {}, "ids"),
    ("/api/queues/retry-notifications", {"all": "maybe"}, "all"),
    ("/api/queues/no-such-action", {}, "verb"),
    ("/api/sessions/sign-out-everywhere", {}, "user"),
    ("/api/sessions/sign-out-everywhere", {"user": "bob", "all": True}, "user"),
]


def test_action_bodies(admin: TestClient, conn, dead_job) -> None:
    job = dead_job("untouched")
    before = fingerprint(conn)
    for body, field in BAD_BULK_BODIES:
        assert_bad_input(_post(admin, "/api/jobs/retry", body), field)
    for url, body, field in BAD_ACTION_BODIES:
        assert_bad_input(_post(admin, url, body), field)
    response = _post(admin, "/api/jobs/retry", {"ids": [1] * 200_000})
    assert response.status_code == 413 and response.json()["field"] == "body"
    assert fingerprint(conn) == before
    # Digits in a string are a fine id too.
    assert _post(admin, "/api/jobs/retry", {"ids": [str(job)]}).json()["changed"] == [job]


BAD_LOGINS = [
    ({"username": "ann"}, "password"),
    ({"username": "ann\u0000", "password": "x"}, "username"),
    ({"username": "ann", "password": "\udfff"}, "password"),
    ({"username": ["ann"], "password": "x"}, "username"),
    ({"username": "ann", "password": "x" * 1025}, "password"),
    ({"username": "ann", "password": "x", "remember": True}, "remember"),
]


def test_login_bodies(anonymous: TestClient, conn) -> None:
    for body, field in BAD_LOGINS:
        assert_bad_input(anonymous.post("/api/login", content=json.dumps(body)), field)
    assert conn.execute("SELECT count(*) FROM console_login_failures").fetchone()[0] == 0
    form = {"username": "ann", "password": "x\x00", "csrf_token": csrf_of(anonymous.get("/login").text)}
    page = anonymous.post("/login", data=form)
    assert page.status_code == 400 and "The value of <code>password</code> was refused" in page.text


def test_page_forms_name_the_refused_field(admin: TestClient, conn, dead_job) -> None:
    job = dead_job("form")
    token = csrf_of(admin.get("/jobs").text)
    before = fingerprint(conn)
    for form, field in (
        ({"verb": "retry", "ids": ["²"]}, "ids[0]"),
        ({"verb": "explode", "ids": [str(job)]}, "verb"),
        ({"verb": "retry", "ids": [HUGE]}, "ids[0]"),
        ({"verb": "retry", "scope": "filter", "since": "soon"}, "since"),
        ({"verb": "cancel", "scope": "filter"}, "verb"),
        ({"ids": [str(job)]}, "verb"),
    ):
        page = admin.post("/jobs/bulk", data={"csrf_token": token, **form})
        assert page.status_code == 400, (form, page.text[-300:])
        assert f"The value of <code>{field}</code> was refused" in page.text, form
    assert fingerprint(conn) == before


def test_csrf_and_role_come_before_the_body(admin: TestClient, readonly: TestClient, dead_job) -> None:
    job = dead_job("order")
    assert admin.post(f"/jobs/{job}/retry", data={"csrf_token": "ü-not-ascii"}).status_code == 403
    assert admin.post("/api/jobs/retry", content=b"[", headers={"X-CSRF-Token": b"\xe9"}).status_code == 403
    token = readonly.get("/api/me").json()["csrf_token"]
    assert readonly.post("/api/jobs/retry", content=b"[", headers={"X-CSRF-Token": token}).status_code == 403


def test_idempotency_keys_are_bounded(admin: TestClient) -> None:
    token = admin.get("/api/me").json()["csrf_token"]
    response = admin.post(
        "/api/jobs/retry", json={"ids": [1]}, headers={"X-CSRF-Token": token, "Idempotency-Key": "k" * 201}
    )
    assert_bad_input(response, "Idempotency-Key")


# ---- the layer itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, ok",
    [("7", 7), (" 7 ", 7), (7, 7), (str(2**63 - 1), 2**63 - 1), ("²", None), ("٣", None), ("7\n", 7),
     (True, None), (7.0, None), ("0x10", None), ("+7", None), ("", None), ("9" * 30, None)],
)  # fmt: skip
def test_ids_are_ascii_digits_within_bigint(value: object, ok: int | None) -> None:
    if ok is None:
        with pytest.raises(validate.BadInput):
            validate.ID.parse("id", value)
    else:
        assert validate.ID.parse("id", value) == ok
