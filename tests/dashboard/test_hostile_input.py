"""Property-based: generated hostile values (NUL, lone surrogates, huge and negative numbers, Unicode
digits, very long strings, odd JSON types) at every API parameter and body. The answer is a 4xx, or
200 where the value happens to be valid; never a 500 or a dropped connection; and a refused request
changes nothing (jobs, audit log, schedule switches)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from dashboard import inputs
from tests.dashboard.conftest import ADMIN_PASSWORD, csrf_of
from tests.dashboard.support import fingerprint

FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SPECIALS = [
    "\x00", "a\x00b", "\ud800", "x\udfffy", "²", "٣", "\uff11\uff12", "\U0001d7d7", "-1", "0", "+1",
    "1e3", "0x1f", " 7 ", "7\n", "", " ", "9" * 19, "9" * 20, str(2**63), str(2**63 - 1), "9" * 5000,
    "x" * 3000, "%00", "' OR 1=1 --", "<script>alert(1)</script>", "..%2f..%2f", "\u202e",
    "\r\nSet-Cookie: x=1", "NaN", "2024-01-01", "0001-01-01T00:00:00+14:00", "dead", "retry",
]  # fmt: skip
# Always tried, besides the generated ones: the values that broke things before.
ALWAYS = ["²", "٣", "\x00", "\ud800", str(2**63), "9" * 5000, "-1", "0"]
hostile_text = st.one_of(
    st.sampled_from(SPECIALS),
    st.text(max_size=40),
    st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=8),  # digits of any script
    st.integers().map(str),
    st.integers(min_value=2**60, max_value=2**200).map(str),
)
odd_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**62, max_value=2**300),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
FIELDS = ["ids", "filter", "all", "user", "view", "provider", "event_id", "state", "text", "username"]
json_values = st.recursive(
    odd_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | hostile_text, inner, max_size=4)
    ),
    max_leaves=12,
)


def always(test):
    """Run `test` with each of ALWAYS as `value` too."""
    for value in ALWAYS:
        test = example(value=value)(test)
    return test


def _q(value: str) -> str:
    """Percent-encoded UTF-8, lone surrogates too (an HTTP client can send any bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _json(value: object) -> bytes:
    return json.dumps(value).encode()  # ASCII: a lone surrogate travels as its \\u escape


def _never_500(response, allowed: set[int]) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    assert response.status_code in allowed, (response.status_code, response.text[:500])
    if response.status_code == 400:
        assert set(response.json()) == {"error", "field", "detail"}, response.text[:300]


@pytest.fixture
def api(admin: TestClient, dead_job) -> tuple[TestClient, str]:
    """The admin's client with its CSRF token, and some dead jobs an action could touch."""
    for i in range(3):
        dead_job(f"hostile-{i}")
    return admin, admin.get("/api/me").json()["csrf_token"]


QUERY_PARAMETERS = {"/api/jobs": [*inputs.JOBS_API, "bogus"], "/api/audit": [*inputs.AUDIT_API, "bogus"]}


@FAST
@always
@given(value=hostile_text)
def test_query_parameters(api, conn, value: str) -> None:
    """The value in each parameter of the listing endpoints in turn."""
    client, _ = api
    before = fingerprint(conn)
    for path, names in QUERY_PARAMETERS.items():
        for name in names:
            response = client.get(f"{path}?{_q(name)}={_q(value)}")
            _never_500(response, {200, 400})
            if response.status_code == 400:
                assert response.json()["field"] == name
    assert fingerprint(conn) == before  # reads never write


@FAST
@always
@given(value=hostile_text)
def test_job_ids_in_paths(api, conn, value: str) -> None:
    client, token = api
    for verb in ("", "/retry", "/cancel", "/delete"):
        before = fingerprint(conn)
        url = f"/api/jobs/{_q(value)}{verb}"
        response = client.post(url, headers={"X-CSRF-Token": token}) if verb else client.get(url)
        _never_500(response, {200, 307, 400, 404, 405})  # 307: the router's trailing-slash redirect
        if response.status_code != 200:
            assert fingerprint(conn) == before


BODY_URLS = [
    "/api/jobs/retry",
    "/api/jobs/cancel",
    "/api/jobs/delete",
    "/api/queues/retry-notifications",
    "/api/queues/replay-payment",
    "/api/queues/refresh-view",
]


@FAST
@given(url=st.sampled_from(BODY_URLS), body=json_values)
def test_action_bodies(api, conn, url: str, body: object) -> None:
    client, token = api
    before = fingerprint(conn)
    response = client.post(url, content=_json(body), headers={"X-CSRF-Token": token})
    _never_500(response, {200, 400, 409, 413})
    if response.status_code != 200:
        assert fingerprint(conn) == before


@FAST
@given(
    ids=st.lists(odd_scalars, max_size=5) | odd_scalars,
    flt=st.dictionaries(st.sampled_from([*inputs.JOB_FILTER, "x"]), odd_scalars, max_size=3),
    use_filter=st.booleans(),
)
def test_job_action_fields(api, conn, ids: object, flt: dict, use_filter: bool) -> None:
    """The fields the bulk actions know, with hostile values (reaching deeper than random JSON)."""
    client, token = api
    before = fingerprint(conn)
    body = {"filter": flt} if use_filter else {"ids": ids}
    response = client.post("/api/jobs/retry", content=_json(body), headers={"X-CSRF-Token": token})
    _never_500(response, {200, 400})
    if response.status_code != 200:
        assert fingerprint(conn) == before


@FAST
@given(username=json_values, password=json_values)
def test_login_bodies(anonymous: TestClient, conn, username: object, password: object) -> None:
    before = fingerprint(conn)
    response = anonymous.post("/api/login", content=_json({"username": username, "password": password}))
    _never_500(response, {400, 401, 429})
    assert fingerprint(conn) == before


@FAST
@given(
    fields=st.dictionaries(
        st.sampled_from([*inputs.JOBS_BULK_FORM, "x"]),
        st.lists(hostile_text, min_size=1, max_size=3),
        max_size=4,
    )
)
def test_page_forms(api, conn, fields: dict[str, list[str]]) -> None:
    client, _ = api
    token = csrf_of(client.get("/jobs").text)
    before = fingerprint(conn)
    pairs = [(k, v) for k, values in fields.items() for v in values if k != "csrf_token"]
    body = "&".join(f"{_q(k)}={_q(v)}" for k, v in [("csrf_token", token), *pairs])
    response = client.post(
        "/jobs/bulk", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    _never_500_page(response)
    if response.status_code != 303:
        assert fingerprint(conn) == before


def _never_500_page(response) -> None:
    assert response.status_code in (303, 400, 409), (response.status_code, response.text[-500:])


@FAST
@always
@given(value=hostile_text)
def test_sign_out_everywhere(api, conn, value: str) -> None:
    client, token = api
    user = value
    before = fingerprint(conn)
    url = "/api/sessions/sign-out-everywhere"
    response = client.post(url, content=_json({"user": user}), headers={"X-CSRF-Token": token})
    _never_500(response, {200, 400})
    if response.status_code != 200:
        assert fingerprint(conn) == before
    if client.get("/api/me").status_code == 401:  # it named ann herself: log in again
        client.post("/api/login", json={"username": "ann", "password": ADMIN_PASSWORD})
