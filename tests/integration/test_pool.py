"""The pool never hands out a connection whose server side is gone (a restart, a terminated
backend): the caller gets a working one instead of an error."""

from __future__ import annotations

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from db import pool
from tests.support import scalar, wait_for


def test_a_connection_whose_backend_was_terminated_is_replaced_on_checkout(database_url: str) -> None:
    with pool.connection() as conn:
        backend = conn.info.backend_pid
    with psycopg.connect(database_url, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (backend,)).fetchone()[0]
    wait_for(
        lambda: not scalar(database_url, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (backend,)),
        10,
        what="the backend to go",
    )
    for _ in range(3):  # every checkout works, none raises the termination
        with pool.connection() as conn:
            assert conn.execute("SELECT pg_backend_pid()").fetchone()[0] != backend


def test_a_healthy_connection_is_handed_out_without_a_round_trip(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    round_trips: list[int] = []
    check = ConnectionPool.check_connection

    def counted(conn: psycopg.Connection) -> None:
        round_trips.append(conn.info.backend_pid)
        check(conn)

    monkeypatch.setattr(ConnectionPool, "check_connection", staticmethod(counted))
    for _ in range(5):
        with pool.connection() as conn:
            conn.execute("SELECT 1")
    assert round_trips == []
