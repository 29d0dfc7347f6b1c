"""Fixtures of the fault suite: servers of the test's own that it may stop (a PostgreSQL cluster,
a RabbitMQ virtual host); the shared servers are never stopped. A test on the shared server runs
twice, directly and through the suite's PgBouncer (tests/e2e/conftest.py says how)."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

import config
import tests.actors
from db import migrate, pool
from tests.conftest import ON_CI, parametrize_routes
from tests.support import PrivatePostgres, postgres_bindir


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_routes(metafunc)


def _unavailable(message: str) -> None:
    if ON_CI:
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class PrivateDatabase:
    server: PrivatePostgres
    url: str


@pytest.fixture
def private_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateDatabase]:
    """A PostgreSQL server of this test's own (initdb + pg_ctl, a free port) with a database
    migrated to head and the test actors' `effects` table; DATABASE_URL points at it."""
    if postgres_bindir() is None:
        _unavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    with PrivatePostgres() as server:
        url = server.url("skyport")
        migrate.create_database_if_missing(url)
        migrate.upgrade("heads", url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(tests.actors.EFFECTS_DDL)
        monkeypatch.setenv("DATABASE_URL", url)
        config.get.cache_clear()
        try:
            yield PrivateDatabase(server, url)
        finally:
            pool.close()
            config.get.cache_clear()


@pytest.fixture
def rabbitmq_url() -> Iterator[str]:
    """A RabbitMQ virtual host of this test's own (queue names are global per vhost)."""
    vhost = f"skyport-test-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["rabbitmqctl", "add_vhost", vhost], check=True, capture_output=True, timeout=60)
        subprocess.run(
            ["rabbitmqctl", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        _unavailable(f"RabbitMQ is not available: {exc}")
    try:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "delete_vhost", vhost], capture_output=True, timeout=60)
