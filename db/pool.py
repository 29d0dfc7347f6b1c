"""The process-wide psycopg connection pool (created lazily, recreated after a fork).

A connection is checked as it is handed out, at no cost while it is healthy: an idle connection
has nothing to read, unless its server went away (a restart, a crash, a terminated backend), which
leaves the termination notice or end-of-file on the socket. Only then is a round trip spent, and
the pool drops the dead connection and hands out another: after a PostgreSQL restart no caller
gets one of the connections the restart cut.

Every connection the product opens comes from here (the pool, or `connect()` for the few that
live outside it), so each honours SKYPORT_DATABASE_POOLER: behind a transaction pooler psycopg
never prepares a statement (the pooler hands each transaction to any server connection, where a
statement prepared by another client may already hold the name, or one prepared by this client
is missing: docs/operations.md, "Through PgBouncer").
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

import config

# Pool connections per process beyond the worker threads: the consumers' claims, the group
# commits' writers. A maintenance job's lock holder (db/locks.py), the relay and the heartbeat
# of a worker process have connections of their own, outside the pool (docs/operations.md).
DEFAULT_EXTRA_CONNECTIONS = 4
# Seconds to wait for the first connection before declaring the database unreachable.
DEFAULT_CONNECT_TIMEOUT_S = 5

_lock = threading.Lock()
_pool: ConnectionPool | None = None
_pool_key: tuple[int, str, str] | None = None


def connect_kwargs() -> dict[str, Any]:
    """psycopg options for every connection of the product: behind a transaction pooler, no
    prepared statements (prepare_threshold=None: not even after 5 runs of the same statement)."""
    return {"prepare_threshold": None} if config.get().database.pooler == "transaction" else {}


def prepare(wanted: bool = True) -> bool:
    """The `prepare=` to pass for a statement that asks to be prepared: False behind a
    transaction pooler (an explicit prepare=True would prepare even with prepare_threshold=None)."""
    return wanted and config.get().database.pooler != "transaction"


def connect(url: str | None = None, **kwargs: Any) -> psycopg.Connection:
    """A connection of its own, outside the pool (DATABASE_URL unless `url` is given), with the
    options every connection takes (`connect_kwargs()`); `kwargs` as psycopg.connect's."""
    return psycopg.connect(url or config.get().database.url, **connect_kwargs(), **kwargs)


def get_pool() -> ConnectionPool:
    """The pool for this process and the current DATABASE_URL."""
    global _pool, _pool_key
    cfg = config.get()
    key = (os.getpid(), cfg.database.url, cfg.database.pooler)
    with _lock:
        if _pool is None or _pool_key != key:
            if _pool is not None and _pool_key is not None and _pool_key[0] == os.getpid():
                _pool.close()
            # Fail fast, with the server's own reason, when the database is unreachable.
            connect(cfg.database.url, connect_timeout=DEFAULT_CONNECT_TIMEOUT_S).close()
            _pool = ConnectionPool(
                cfg.database.url,
                min_size=1,
                max_size=cfg.worker.threads + DEFAULT_EXTRA_CONNECTIONS,
                kwargs={"autocommit": True, **connect_kwargs()},
                check=check_idle_connection,
                open=True,
                name="skyport",
            )
            _pool_key = key
        return _pool


def check_idle_connection(conn: psycopg.Connection) -> None:
    """Raise when a connection leaving the pool is dead; free for one that has nothing to read."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.pgconn.socket, select.POLLIN)
    if poller.poll(0):  # a termination notice, end-of-file (or, rarely, a parameter change): look closer
        ConnectionPool.check_connection(conn)


@contextmanager
def connection(timeout_s: float = 30.0) -> Iterator[psycopg.Connection]:
    """Borrow an autocommit connection; use `with conn.transaction():` for several statements."""
    with get_pool().connection(timeout=timeout_s) as conn:
        yield conn


def close() -> None:
    global _pool, _pool_key
    with _lock:
        if _pool is not None and _pool_key is not None and _pool_key[0] == os.getpid():
            _pool.close()
        _pool, _pool_key = None, None
