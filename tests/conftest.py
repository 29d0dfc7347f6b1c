"""Fixtures for real PostgreSQL and Redis.

One template database is migrated once per run; each test that needs a database gets its own
copy (`CREATE DATABASE ... TEMPLATE`), dropped afterwards. Redis is shared, so each test gets a
key namespace of its own and never flushes anything. A service that is down skips the test on a
laptop and fails it on CI (CI=true).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from psycopg import sql

import config
import jobs.registry  # noqa: F401 - every actor declared, as in a worker
import tests.actors
from db import migrate, pool
from tests.pgbouncer import PgBouncer, PgBouncerUnavailable
from workers.enqueue import wait_until_sent

ADMIN_URL = os.environ.get("SKYPORT_TEST_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
TEST_REDIS_URL = os.environ.get("SKYPORT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
TEST_AMQP_URL = os.environ.get("SKYPORT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# How the product under test (every process the tests start, and DATABASE_URL in-process) reaches
# each test's database: `direct`, or `pgbouncer`: through one PgBouncer in transaction mode without
# a direct URL (the tests' own checks still read the server). tests/e2e and tests/faults run each
# test both ways; this variable narrows them to one, and sends every other folder through the
# pooler too (docs/operations.md, "Through PgBouncer").
DATABASE_ROUTE = os.environ.get("SKYPORT_TEST_DATABASE_ROUTE", "")
ROUTES = (DATABASE_ROUTE,) if DATABASE_ROUTE else ("direct", "pgbouncer")
RUN_ID = uuid.uuid4().hex[:8]


def _service_down(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if ON_CI:
        pytest.fail(message)
    pytest.skip(message)


def db_url(name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    info["dbname"] = name
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{name}"


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database migrated to head once per run; tests copy it."""
    name = f"skyport_tpl_{RUN_ID}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        _service_down("PostgreSQL", exc)
    try:
        migrate.upgrade("heads", db_url(name))
        yield name
    finally:
        _drop(name)


@pytest.fixture
def fresh_db_name() -> Iterator[str]:
    """An empty database of its own (for migration tests)."""
    name = f"skyport_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        _drop(name)


@pytest.fixture(scope="session")
def suite_pgbouncer() -> Iterator[PgBouncer]:
    """The PgBouncer of the `pgbouncer` route, one per run. At the end, its log holds no
    prepared-statement error."""
    try:
        with PgBouncer(ADMIN_URL, pool_size=20) as bouncer:
            yield bouncer
            log = bouncer.log_text()
    except PgBouncerUnavailable as exc:
        pytest.fail(str(exc))
    assert "prepared statement" not in log.lower(), log[-3000:]


@pytest.fixture
def database_route() -> str:
    """`direct` or `pgbouncer` (DATABASE_ROUTE); tests/e2e and tests/faults parametrize it."""
    return DATABASE_ROUTE or "direct"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `longest` first. pytest-xdist hands its first worker a first batch of
    consecutive tests, so they start at once, there, instead of last and alone. Marked tests share
    that worker: mark only those that would set the suite's tail (minutes of real clock)."""
    items.sort(key=lambda item: item.get_closest_marker("longest") is None)  # stable: else as collected


def parametrize_routes(metafunc: pytest.Metafunc) -> None:
    """`pytest_generate_tests` of the folders whose tests run on every route in ROUTES."""
    if "database_url" in metafunc.fixturenames and "private_database" not in metafunc.fixturenames:
        # A test marked one_route measures time (seconds of rate-limited starts): once is enough.
        routes = ROUTES[:1] if metafunc.definition.get_closest_marker("one_route") else ROUTES
        metafunc.parametrize("database_route", routes)


@pytest.fixture
def database_url(
    template_db: str,
    redis_namespace: str,
    database_route: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """A migrated database of this test's own; DATABASE_URL points at it (through the suite's
    PgBouncer on the `pgbouncer` route). With it comes a Redis namespace of the test's own:
    enqueue() sends jobs to Redis right after they commit. Yields the direct URL."""
    name = f"skyport_t_{RUN_ID}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    url = db_url(name)
    if database_route == "pgbouncer":
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("suite_pgbouncer").url(url))
        monkeypatch.setenv("SKYPORT_DATABASE_POOLER", "transaction")
        monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    else:
        monkeypatch.setenv("DATABASE_URL", url)
    config.get.cache_clear()
    try:
        yield url
    finally:
        pool.close()
        config.get.cache_clear()
        _drop(name)


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg.Connection]:
    """An autocommit connection to the test's database."""
    with psycopg.connect(database_url, autocommit=True) as c:
        yield c


@pytest.fixture
def redis_namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A Redis key namespace of this test's own on the shared server; its keys are deleted after."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _service_down("Redis", exc)
    namespace = f"skyport-test-{RUN_ID}-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BROKER_URL", TEST_REDIS_URL)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SKYPORT_BROKER_NAMESPACE", namespace)
    config.get.cache_clear()
    try:
        yield namespace
    finally:
        wait_until_sent()  # no message of this test lands after the clean-up
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        config.get.cache_clear()


@pytest.fixture
def effects(database_url: str) -> str:
    """The `effects` table the test actors write to; returns the database URL."""
    with psycopg.connect(database_url, autocommit=True) as c:
        c.execute(tests.actors.EFFECTS_DDL)
    return database_url
