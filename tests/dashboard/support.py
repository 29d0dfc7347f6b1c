"""Helpers for the console's security tests: apps as separate web processes would build them,
clients at chosen addresses, API logins, a fingerprint of what an action may change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from argon2 import PasswordHasher
from starlette.testclient import TestClient

import config
from tests.dashboard.conftest import ADMIN_PASSWORD, READONLY_PASSWORD

PASSWORDS = {"ann": ADMIN_PASSWORD, "bob": READONLY_PASSWORD}
COOKIE = "skyport_session"
# Argon2 at its cheapest: these tests log in hundreds of times; the limiter and the sessions do
# not depend on the hash's cost.
_CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
CHEAP_USERS = f"ann:{_CHEAP.hash(ADMIN_PASSWORD)}:admin,bob:{_CHEAP.hash(READONLY_PASSWORD)}:readonly"


def use_cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """ann and bob with cheap hashes, and a cheap stand-in hash for unknown users."""
    from dashboard import auth

    monkeypatch.setenv("SKYPORT_DASHBOARD_USERS", CHEAP_USERS)
    monkeypatch.setattr(auth, "_DUMMY_HASH", _CHEAP.hash("nobody"))
    config.get.cache_clear()


@contextmanager
def web_process(address: str = "testclient") -> Iterator[TestClient]:
    """A client of a new app (as another web process would build it, from the configuration now)
    whose requests come from `address`."""
    from dashboard.app import create_app

    config.get.cache_clear()
    with TestClient(create_app(), follow_redirects=False, client=(address, 50000)) as client:
        yield client


def api_login(client: TestClient, name: str, password: str | None = None) -> str:
    """Log in through the API; returns the CSRF token."""
    response = client.post("/api/login", json={"username": name, "password": password or PASSWORDS[name]})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def try_login(client: TestClient, name: str, password: str) -> int:
    return client.post("/api/login", json={"username": name, "password": password}).status_code


def fingerprint(conn: psycopg.Connection) -> tuple:
    """Everything a console action may change: the jobs, the audit log, the schedule switches."""
    return conn.execute(
        """SELECT (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) FROM jobs t),
                  (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY audit_id), '')) FROM audit_log t),
                  (SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY name), ''))
                     FROM schedule_overrides t)"""
    ).fetchone()


def assert_bad_input(response, field: str | None = None) -> dict:
    """A 400 in the validation layer's shape (naming `field` when given)."""
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error", "field", "detail"}, body
    if field is not None:
        assert body["field"] == field, body
    return body
