"""Fixtures for the dashboard: an app on the test's database and Redis namespace, logged-in clients."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import psycopg
import pytest
from starlette.testclient import TestClient

from dashboard import auth

ADMIN_PASSWORD = "ann-secret-1"
READONLY_PASSWORD = "bob-secret-2"
_HASHES = {"ann": auth.hash_password(ADMIN_PASSWORD), "bob": auth.hash_password(READONLY_PASSWORD)}


@pytest.fixture
def dashboard_env(database_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SKYPORT_DASHBOARD_USERS", f"ann:{_HASHES['ann']}:admin,bob:{_HASHES['bob']}:readonly")
    monkeypatch.setenv("SKYPORT_SECRET_KEY", "test-secret-key")
    import config

    config.get.cache_clear()
    return database_url


@pytest.fixture
def anonymous(dashboard_env: str) -> Iterator[TestClient]:
    from dashboard.app import create_app

    with TestClient(create_app(), follow_redirects=False) as client:
        yield client


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def log_in(client: TestClient, name: str, password: str) -> TestClient:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert response.status_code == 303, response.text
    return client


@pytest.fixture
def admin(anonymous: TestClient) -> TestClient:
    return log_in(anonymous, "ann", ADMIN_PASSWORD)


@pytest.fixture
def readonly(dashboard_env: str) -> Iterator[TestClient]:
    from dashboard.app import create_app

    with TestClient(create_app(), follow_redirects=False) as client:
        yield log_in(client, "bob", READONLY_PASSWORD)


def make_dead(conn: psycopg.Connection, key: str, error: str = "boom", attempts: int = 1) -> int:
    """A `remember` job that died after `attempts` failed attempts, each with a traceback."""
    from workers import enqueue

    job_id = enqueue("remember", [key]).id
    for n in range(1, attempts + 1):
        conn.execute(
            """INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error,
                                         traceback)
               VALUES (%s, %s, 'w-test', now() - interval '2 seconds', now(), 'failed', %s, %s)""",
            (job_id, n, error, f"Traceback (most recent call last):\n  {error}"),
        )
    conn.execute(
        """UPDATE jobs SET state = 'dead', attempts = %s, max_attempts = %s, finished_at = now(),
                           last_error = %s, published_at = now(), dedup_lock = NULL WHERE id = %s""",
        (attempts, attempts, error, job_id),
    )
    return job_id


@pytest.fixture
def dead_job(conn: psycopg.Connection) -> Callable[..., int]:
    return lambda key, **kw: make_dead(conn, key, **kw)
