"""Server-side sessions: logout, a new password hash and an admin's "sign out everywhere" end every
copy of a session at once, in every web process; secure cookies over HTTPS."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

import config
from tests.dashboard.conftest import csrf_of
from tests.dashboard.support import COOKIE, api_login, use_cheap_hashes, web_process


@pytest.fixture
def users(dashboard_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_cheap_hashes(monkeypatch)


def _copy_cookie(source: TestClient, target: TestClient, name: str = COOKIE) -> None:
    target.cookies.set(name, source.cookies.get(name))


def _audit(conn) -> list[tuple]:
    return conn.execute(
        "SELECT performed_by, reason, table_name, record_id, action, new_values->>'sessions' FROM audit_log"
        " ORDER BY audit_id"
    ).fetchall()


def test_a_copied_cookie_stops_working_after_logout_in_every_process(users: None) -> None:
    with web_process() as browser, web_process() as thief:
        token = api_login(browser, "ann")
        _copy_cookie(browser, thief)  # another web process, the same cookie
        assert thief.get("/api/me").status_code == 200 and thief.get("/jobs").status_code == 200
        assert browser.post("/api/logout", headers={"X-CSRF-Token": token}).status_code == 200
        assert thief.get("/api/me").status_code == 401
        page = thief.get("/jobs")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")
        assert browser.get("/api/me").status_code == 401


def test_the_logout_form_ends_the_session_too(users: None, conn) -> None:
    with web_process() as browser, web_process() as thief:
        api_login(browser, "ann")
        _copy_cookie(browser, thief)
        token = csrf_of(browser.get("/jobs").text)
        assert browser.post("/logout", data={"csrf_token": "forged"}).status_code == 303
        assert thief.get("/api/me").status_code == 200  # a forged logout ends nothing
        assert browser.post("/logout", data={"csrf_token": token}).headers["location"] == "/login"
        assert thief.get("/api/me").status_code == 401
        assert conn.execute("SELECT count(*) FROM console_sessions").fetchone()[0] == 0


def test_a_new_password_hash_ends_the_users_sessions(users: None, monkeypatch, conn) -> None:
    with web_process() as browser:
        api_login(browser, "ann")
        cookie = browser.cookies.get(COOKIE)
    from dashboard import auth

    new_hash = auth.hash_password("a-new-password")
    monkeypatch.setenv("SKYPORT_DASHBOARD_USERS", f"ann:{new_hash}:admin")  # the web processes restart
    with web_process() as restarted:
        restarted.cookies.set(COOKIE, cookie)
        assert restarted.get("/api/me").status_code == 401
        assert conn.execute("SELECT count(*) FROM console_sessions").fetchone()[0] == 0
        api_login(restarted, "ann", "a-new-password")


def test_a_new_login_replaces_the_session_it_came_with(users: None) -> None:
    with web_process() as browser, web_process() as other:
        api_login(browser, "ann")
        _copy_cookie(browser, other)
        api_login(browser, "ann")  # a new session id, the old one ended
        assert other.get("/api/me").status_code == 401
        assert browser.get("/api/me").status_code == 200


def test_an_expired_session_is_no_login(users: None, conn) -> None:
    with web_process() as browser:
        api_login(browser, "bob")
        conn.execute("UPDATE console_sessions SET expires_at = now() - interval '1 second'")
        assert browser.get("/api/me").status_code == 401


def test_the_database_keeps_only_a_hash_of_the_token(users: None, conn) -> None:
    with web_process("10.1.2.3") as browser:
        api_login(browser, "bob")
        stored = conn.execute(
            "SELECT token_hash, user_name, host(ip_address), user_agent FROM console_sessions"
        ).fetchall()
        assert len(stored) == 1 and stored[0][1:] == ("bob", "10.1.2.3", "testclient")
        cookie = browser.cookies.get(COOKIE)
        assert stored[0][0] not in cookie and len(stored[0][0]) == 64
        listed = browser.get("/api/sessions").json()["sessions"]
        assert [(s["user_name"], s["current"]) for s in listed] == [("bob", True)]
        assert "token_hash" not in listed[0]


def test_an_admin_signs_a_user_out_everywhere(users: None, conn) -> None:
    with web_process() as admin, web_process() as bob_laptop, web_process() as bob_phone:
        token = api_login(admin, "ann")
        api_login(bob_laptop, "bob")
        bob_token = api_login(bob_phone, "bob")
        # bob is read-only: he may not.
        refused = bob_phone.post(
            "/api/sessions/sign-out-everywhere", json={"user": "ann"}, headers={"X-CSRF-Token": bob_token}
        )
        assert refused.status_code == 403
        done = admin.post(
            "/api/sessions/sign-out-everywhere", json={"user": "bob"}, headers={"X-CSRF-Token": token}
        )
        assert done.status_code == 200 and done.json()["message"] == "ended 2 session(s) of bob"
        assert bob_laptop.get("/api/me").status_code == 401 and bob_phone.get("/api/me").status_code == 401
        assert admin.get("/api/me").status_code == 200
        assert _audit(conn) == [("ops:ann", "sign out everywhere", "console_sessions", "bob", "DELETE", "2")]


def test_sign_out_everywhere_for_every_user_from_the_page(users: None, conn) -> None:
    with web_process() as admin, web_process() as bob:
        api_login(admin, "ann")
        api_login(bob, "bob")
        page = admin.get("/sessions")
        assert page.status_code == 200 and "this session" in page.text and "Sign out everywhere" in page.text
        assert "Sign out everywhere" not in bob.get("/sessions").text
        token = csrf_of(page.text)
        bad = admin.post(
            "/sessions/sign-out-everywhere", data={"csrf_token": token, "user": "bob", "all": "1"}
        )
        assert bad.status_code == 400 and "user" in bad.text
        done = admin.post("/sessions/sign-out-everywhere", data={"csrf_token": token, "all": "1"})
        assert done.status_code == 303 and done.headers["location"] == "/login"
        assert admin.get("/api/me").status_code == 401 and bob.get("/api/me").status_code == 401
        assert _audit(conn) == [("ops:ann", "sign out everywhere", "console_sessions", "*", "DELETE", "2")]


@pytest.mark.parametrize(
    "public_url, override, secure",
    [(None, None, False), ("https://ops.example.com", None, True), ("https://ops.example.com", "0", False),
     ("http://ops.example.com", None, False), (None, "1", True)],
)  # fmt: skip
def test_cookies_are_secure_over_https(users: None, monkeypatch, public_url, override, secure) -> None:
    for name, value in (("SKYPORT_PUBLIC_URL", public_url), ("SKYPORT_SECURE_COOKIES", override)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert config.load().web.secure_cookies is secure
    with web_process() as client:
        cookie = client.get("/login").headers["set-cookie"].lower()
        assert ("; secure" in cookie) is secure
        assert cookie.startswith("__host-skyport_session=" if secure else "skyport_session=")
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
