"""Every connection of the product honours SKYPORT_DATABASE_POOLER, and nothing leaves session
state on a connection that may be pooled (docs/operations.md, "Through PgBouncer")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import config
from db import pool

REPO = Path(__file__).resolve().parent.parent.parent
PRODUCT = sorted(
    path
    for package in ("config", "db", "workers", "jobs", "scheduler", "dashboard", "skyport")
    for path in (REPO / package).rglob("*.py")
    if "versions" not in path.parts  # the migrations' own DDL
)
# Where connections are made: each passes db.pool.connect_kwargs().
CONNECTING_MODULES = {
    REPO / "db" / "pool.py",
    REPO / "db" / "migrate.py",
    REPO / "db" / "migrations" / "env.py",
}
# What opens connections, but through db.pool: psycopg.connect, a pool, an engine.
OPENERS = {"ConnectionPool", "AsyncConnectionPool", "NullConnectionPool", "create_engine"}
SQL_START = re.compile(r"^\s*(SELECT|SET|RESET|LISTEN|WITH|UPDATE|INSERT|DELETE)\b", re.IGNORECASE)
# Session state in SQL text: session advisory locks, session settings (a statement that is a
# SET or RESET but not SET LOCAL, set_config(..., false)), LISTEN.
SESSION_STATE = re.compile(
    r"pg_(try_)?advisory_lock(_shared)?\(|set_config\([^)]*,\s*false\s*\)"
    r"|^\s*(SET|RESET)\s+(?!LOCAL\b)|^\s*LISTEN\b",
    re.IGNORECASE,
)
# The relay's LISTEN, on the session connection it is given.
LISTENER = REPO / "workers" / "relay.py"
# Partition upkeep's session SET lock_timeout, on a session connection of its own for DETACH
# CONCURRENTLY (jobs/partitions/maintain.py); elsewhere it is SET LOCAL.
SESSION_SETTER = REPO / "jobs" / "partitions" / "maintain.py"


def _calls(path: Path) -> list[ast.Call]:
    return [node for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)]


def _opens_a_connection(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name in OPENERS:
        return True
    # psycopg.connect(...), psycopg.Connection.connect(...); not db.pool.connect nor a callable argument.
    return name == "connect" and isinstance(func, ast.Attribute) and "psycopg" in ast.unparse(func.value)


def test_connections_are_opened_only_where_the_pooler_setting_is_applied() -> None:
    found = [
        f"{path.relative_to(REPO)}:{call.lineno}: {ast.unparse(call.func)}"
        for path in PRODUCT
        if path not in CONNECTING_MODULES
        for call in _calls(path)
        if _opens_a_connection(call)
    ]
    assert found == []  # db.pool.connect(url, ...) instead


def test_no_statement_asks_to_be_prepared_but_through_the_setting() -> None:
    found = [
        f"{path.relative_to(REPO)}:{call.lineno}"
        for path in PRODUCT
        for call in _calls(path)
        for keyword in call.keywords
        if keyword.arg == "prepare" and isinstance(keyword.value, ast.Constant) and keyword.value.value
    ]
    assert found == []  # prepare=db.pool.prepare() instead


def test_no_sql_text_keeps_session_state() -> None:
    found = []
    for path in PRODUCT:
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            text = node.value
            if not SQL_START.match(text) or not SESSION_STATE.search(text):
                continue
            if path == LISTENER and text.startswith("LISTEN {}"):
                continue  # on the session connection the relay is given
            if path == SESSION_SETTER and text == "SET":
                continue
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: {text.strip()[:60]!r}")
    assert found == []


@pytest.mark.parametrize(("pooler", "expected"), [("none", {}), ("transaction", {"prepare_threshold": None})])
def test_connect_kwargs_follow_the_pooler(
    pooler: str, expected: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SKYPORT_DATABASE_POOLER", pooler)
    config.get.cache_clear()
    try:
        assert pool.connect_kwargs() == expected
        assert pool.prepare() is (pooler == "none")
        assert pool.prepare(False) is False
    finally:
        monkeypatch.undo()
        config.get.cache_clear()
