"""Fixtures of the pooler suite: one real PgBouncer in transaction pooling mode per test module
(tests/pgbouncer.py), and each test's database reached through it.

`pooled` points DATABASE_URL at the test's database through the pooler and sets
SKYPORT_DATABASE_POOLER=transaction; parametrized indirectly with "direct", it also sets
DATABASE_DIRECT_URL (the same database on the server), else there is none and nothing LISTENs.
The pooler has few server connections, so clients share them: a statement prepared by one client
would be found, or missed, by another. After each test no advisory lock is left in its database;
after the module, no process's output and not the pooler's log mention a prepared statement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

import config
from db import pool
from tests.conftest import ADMIN_URL, ON_CI
from tests.pgbouncer import PgBouncer, PgBouncerUnavailable
from tests.support import SkyportProcess

# Server connections per database: fewer than the clients, so that clients share them.
POOL_SIZE = 4
# What a broken prepared statement looks like in a log ("_pg3_0" already exists / does not exist).
PREPARED_STATEMENT_ERROR = re.compile(r"prepared statement", re.IGNORECASE)


@dataclass
class PoolerRun:
    """The module's PgBouncer, and the output of every process a test ran through it."""

    bouncer: PgBouncer
    outputs: list[str] = field(default_factory=list)

    @contextmanager
    def running(self, process: SkyportProcess) -> Iterator[SkyportProcess]:
        """`with run.running(WorkerProcess()) as worker:` keeps its whole output for the check."""
        with process:
            try:
                yield process
            finally:
                self.outputs.append(Path(process.log.name).read_text(errors="replace"))


@dataclass(frozen=True)
class Pooled:
    url: str  # DATABASE_URL: through the pooler
    direct: str  # the same database on the server (the test's checks)
    direct_url_set: bool  # DATABASE_DIRECT_URL is set (the relay LISTENs on it)


@pytest.fixture(scope="module")
def pooler_run() -> Iterator[PoolerRun]:
    try:
        bouncer = PgBouncer(ADMIN_URL, pool_size=POOL_SIZE).start()
    except PgBouncerUnavailable as exc:
        if ON_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    run = PoolerRun(bouncer)
    try:
        yield run
        log = bouncer.log_text()
    finally:
        bouncer.__exit__()
    assert not PREPARED_STATEMENT_ERROR.search(log), log[-3000:]
    for output in run.outputs:
        assert not PREPARED_STATEMENT_ERROR.search(output), output[-3000:]


def advisory_locks(direct_url: str) -> int:
    with psycopg.connect(direct_url, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ).fetchone()[0]


@pytest.fixture
def pooled(
    request: pytest.FixtureRequest, pooler_run: PoolerRun, effects: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pooled]:
    """The test's database (with the test actors' `effects` table) through the module's pooler."""
    direct_url_set = getattr(request, "param", "pooled") == "direct"
    url = pooler_run.bouncer.url(effects)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SKYPORT_DATABASE_POOLER", "transaction")
    if direct_url_set:
        monkeypatch.setenv("DATABASE_DIRECT_URL", effects)
    else:
        monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    pool.close()
    config.get.cache_clear()
    try:
        yield Pooled(url, effects, direct_url_set)
    finally:
        pool.close()
        config.get.cache_clear()
    assert advisory_locks(effects) == 0, "an advisory lock outlived the test"
