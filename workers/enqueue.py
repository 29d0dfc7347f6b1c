"""The apps' way in: `enqueue` and `enqueue_many` write ledger rows.

A row is the job. Given the app's connection, the row is written in the app's open transaction
and exists only if that transaction commits; the relay hands committed rows to the broker.
Without one, the rows commit at once and are handed to Redis right after, as Dramatiq's `send`
would (the relay takes over if Redis refuses them): by `enqueue_many` before it returns, by
`enqueue` from a thread of its own once the caller's row is durable (workers/send_behind.py).
Jobs enqueued one per call without a connection go through one group commit per process
(workers/group_commit.py): a lone call is one INSERT that commits on its own; the calls of
threads and asyncio tasks that arrive while one is writing share the next INSERT and its commit,
and each returns once its own row is committed.
Dedup keys are enforced by the unique index on `jobs.dedup_lock` (INSERT .. ON CONFLICT DO
NOTHING), never by a check-then-insert.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import psycopg
import redis

import config
from db import pool
from workers import ledger_sql, relay
from workers.group_commit import GroupCommit
from workers.job_spec import EnqueueError, JobRef, JobSpec, Row, text_problem, validate_spec
from workers.send_behind import SendBehind

# Attempts to resolve a dedup conflict whose holder is finishing at the same moment.
_DEDUP_RESOLVE_TRIES = 5
# After Redis refused jobs sent at enqueue, enqueue leaves publishing to the relay this long.
DEFAULT_SEND_PAUSE_S = 5.0
# A Redis that does not answer within this long makes enqueue leave its jobs to the relay.
DEFAULT_SEND_TIMEOUT_S = 1.0
# Jobs committed and waiting for the sender at most (a Redis that answers, slowly): beyond, new
# jobs are left to the relay instead of piling up in the process.
MAX_SEND_BACKLOG = 50_000

logger = logging.getLogger("skyport.enqueue")
_sending_paused_until = 0.0


def enqueue(
    actor: dramatiq.Actor | str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    dedup_key: str | None = None,
    dedup_window: timedelta | float | None = None,
    delay: timedelta | float | None = None,
    eta: datetime | None = None,
    queue: str | None = None,
    conn: Any = None,
    enqueued_by: str = "app",
    priority: int | None = None,
) -> JobRef:
    """Enqueue one job; returns its reference (an existing job's for a taken dedup key).

    `delay` (seconds or timedelta) or `eta` (aware datetime) hold the job as `scheduled` until
    then. `dedup_window` keeps the dedup key blocked that long after the job finished. `conn` is
    the app's psycopg connection, SQLAlchemy Connection or Session: the job then commits or
    rolls back with the app's transaction. Without it the job is committed at once and sent to Redis.
    `priority`: 0 runs first, 9 last (default: the actor's `priority` option, else 0).
    """
    spec = JobSpec(actor, args, kwargs, dedup_key, dedup_window, delay, eta, queue, priority)
    if conn is not None:
        return enqueue_many([spec], conn=conn, enqueued_by=enqueued_by)[0]
    return _own(_grouped.submit(_Enqueue.checked(spec, enqueued_by)))


async def enqueue_async(
    actor: dramatiq.Actor | str,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    *,
    dedup_key: str | None = None,
    dedup_window: timedelta | float | None = None,
    delay: timedelta | float | None = None,
    eta: datetime | None = None,
    queue: str | None = None,
    enqueued_by: str = "app",
    priority: int | None = None,
) -> JobRef:
    """`enqueue` for asyncio apps: the same job, committed before it returns (its message follows),
    in the same group commit as the process's threads; the event loop is never blocked. Arguments are checked
    at once (EnqueueError). A job that must commit with the app's own transaction takes the
    synchronous `enqueue(..., conn=...)`."""
    spec = JobSpec(actor, args, kwargs, dedup_key, dedup_window, delay, eta, queue, priority)
    return _own(await _grouped.submit_async(_Enqueue.checked(spec, enqueued_by)))


def enqueue_many(jobs: Iterable[JobSpec], *, conn: Any = None, enqueued_by: str = "app") -> list[JobRef]:
    """Enqueue a batch in one statement; references come back in the order given."""
    _checked_by(enqueued_by)
    rows = [validate_spec(spec) for spec in jobs]
    if not rows:
        return []
    send = _sends_at_once(conn)
    with _psycopg_connection(conn) as pg:
        idle = pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        if pg.autocommit and idle and len(rows) > 1:
            with pg.transaction():
                _insert(pg, rows, enqueued_by, send)
        else:  # the caller's transaction (no savepoint), or one job: its INSERT commits on its own
            _insert(pg, rows, enqueued_by, send)
        if send:
            _send(pg, [row for row in rows if row.message_id is not None])
    return [row.ref for row in rows if row.ref is not None]


def _checked_by(enqueued_by: Any) -> str:
    if not isinstance(enqueued_by, str) or not 0 < len(enqueued_by) <= 200 or text_problem(enqueued_by):
        raise EnqueueError(f"enqueued_by must be a short text, got {enqueued_by!r:.80}", "enqueued_by")
    return enqueued_by


# ---- the group commit of single jobs ----------------------------------------------------------


@dataclass
class _Enqueue:
    """One caller's job, checked, waiting for its turn in the group's INSERT."""

    row: Row
    enqueued_by: str
    send: bool

    @classmethod
    def checked(cls, spec: JobSpec, enqueued_by: str) -> _Enqueue:
        """The job of `enqueue`/`enqueue_async`, checked before it joins the group (EnqueueError)."""
        return cls(validate_spec(spec), _checked_by(enqueued_by), _sends_at_once(None))


def _write_group(items: list[_Enqueue]) -> list[JobRef | Exception]:
    """One INSERT (that commits on its own) for the jobs of concurrent callers: one per kind of
    call, in practice one. Each caller gets its row's reference (an existing job's for a taken
    key), or its own error: a statement PostgreSQL refused is tried again job by job."""
    kinds: dict[tuple[str, bool], list[Row]] = {}
    for item in items:
        kinds.setdefault((item.enqueued_by, item.send), []).append(item.row)
    conn = _writer.connection()
    errors: dict[int, Exception] = {}
    try:
        for (enqueued_by, send), rows in kinds.items():
            try:
                _insert(conn, rows, enqueued_by, send)
            except (psycopg.Error, EnqueueError) as exc:
                if len(rows) == 1 or isinstance(exc, psycopg.OperationalError):
                    raise
                for row in rows:  # each job not yet written alone, with its own outcome
                    if row.ref is not None:  # written (a dedup follow-up failed, not the INSERT)
                        continue
                    try:
                        _insert(conn, [row], enqueued_by, send)
                    except (psycopg.Error, EnqueueError) as alone:
                        if isinstance(alone, psycopg.OperationalError):
                            raise
                        errors[id(row)] = alone
    except psycopg.OperationalError:
        _writer.discard()  # the next write connects again
        raise
    return [errors.get(id(item.row)) or item.row.ref for item in items]  # type: ignore[misc]


def _own(result: JobRef | Exception) -> JobRef:
    if isinstance(result, Exception):
        raise result
    return result


def _send_group(items: list[_Enqueue], refs: list[JobRef | Exception]) -> None:
    """After the group's commit: its new jobs to Redis, behind the callers' backs, to the broker
    configured now (a test may change it before the send)."""
    target = _broker_target()
    _behind.put([(target, item.row) for item in items if item.send and item.row.message_id is not None])


def _broker_target() -> tuple[str, str]:
    """The configured Redis: its URL and key namespace."""
    broker = config.get().broker
    return broker.url, broker.namespace


def _send_behind(sends: list[tuple[tuple[str, str], Row]]) -> None:
    by_target: dict[tuple[str, str], list[Row]] = {}
    for target, row in sends:
        by_target.setdefault(target, []).append(row)
    for target, rows in by_target.items():
        try:
            _send(None, rows, target)
        except Exception:  # the other targets' jobs still go
            logger.exception("%d new jobs not sent; the lifeline publishes them", len(rows))


def wait_until_sent(timeout_s: float = 5.0) -> bool:
    """Wait until the jobs `enqueue` committed so far are on Redis (or left to the relay):
    `enqueue` returns once its job is committed, and its message follows within a round trip."""
    return _behind.flush(timeout_s)


class _WriterConnection:
    """The group's own autocommit connection, used by one write at a time (the callers take turns):
    no pool check-out per job. A new one after a fork, another database or a broken connection."""

    def __init__(self) -> None:
        self._conn: psycopg.Connection | None = None
        self._key: tuple[int, str, str] | None = None

    def connection(self) -> psycopg.Connection:
        cfg = config.get()
        key = (os.getpid(), cfg.database.url, cfg.database.pooler)
        conn = self._conn
        if conn is not None and (self._key != key or _dead(conn)):
            self.discard()
            conn = None
        if conn is None:
            conn = self._conn = pool.connect(autocommit=True)
            self._key = key
        return conn

    def discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._key is not None and self._key[0] == os.getpid():
            conn.close()


def _dead(conn: psycopg.Connection) -> bool:
    try:
        pool.check_idle_connection(conn)
    except psycopg.Error:
        return True
    return False


_writer = _WriterConnection()
_behind: SendBehind[tuple[tuple[str, str], Row]] = SendBehind("skyport-enqueue-send", _send_behind)
_grouped: GroupCommit[_Enqueue, JobRef | Exception] = GroupCommit(
    "skyport-enqueue", _write_group, then=_send_group
)


def _send(conn: psycopg.Connection | None, rows: list[Row], target: tuple[str, str] | None = None) -> None:
    """Hand jobs that just committed (inserted as published) to Redis (`target`: URL and
    namespace; the configured one by default), as the relay would.
    If Redis refuses, they are marked unpublished for the relay, which publishes them when Redis
    is back, and enqueue stops sending for a while; if even that write fails, the lifeline
    publishes them again after `republish_after_s`. Either way the jobs are enqueued."""
    global _sending_paused_until
    if not rows:
        return
    messages = [
        relay.job_message(r.ref.id, r.actor, r.queue, r.call[0], r.call[1], r.message_id, priority=r.priority)  # type: ignore[union-attr]
        for r in rows
    ]
    url, namespace = target or _broker_target()
    try:
        relay.send_to_redis(_redis_client(url), namespace, messages)
    except redis.RedisError as exc:
        _sending_paused_until = time.monotonic() + DEFAULT_SEND_PAUSE_S
        logger.warning("Redis refused %d new jobs (%s); the relay publishes them", len(rows), exc)
        with _psycopg_connection(conn) as pg:  # the group's sends: a pool connection of their own
            relay.give_back(pg, [m.options["job_id"] for m in messages], [m.message_id for m in messages])


@functools.lru_cache(maxsize=4)
def _redis_client_of_process(pid: int, url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=DEFAULT_SEND_TIMEOUT_S, socket_connect_timeout=DEFAULT_SEND_TIMEOUT_S
    )


def _redis_client(url: str) -> redis.Redis:
    return _redis_client_of_process(os.getpid(), url)  # a forked child gets its own connections


def _sends_at_once(conn: Any) -> bool:
    """Jobs enqueued outside a caller's transaction are sent to Redis right after their commit."""
    if conn is not None or time.monotonic() < _sending_paused_until or _behind.backlog() >= MAX_SEND_BACKLOG:
        return False
    return config.get().broker.kind == "redis"


def _insert(conn: psycopg.Connection, rows: list[Row], enqueued_by: str, send: bool) -> None:
    """Insert the rows (marked published when `send`: the caller sends them right after the
    commit); each row gets its reference, an existing job's for a dedup key that is taken."""
    pending = rows
    for _ in range(_DEDUP_RESOLVE_TRIES):
        if len(pending) == 1:  # prepared at once where the connection allows it (not behind a pooler)
            one = _one(pending[0], enqueued_by, send)
            returned = conn.execute(ledger_sql.JOB_INSERT_ONE, one, prepare=pool.prepare()).fetchall()
        else:
            returned = conn.execute(ledger_sql.JOB_INSERT, _columns(pending, enqueued_by, send)).fetchall()
        fresh = [r for r in pending if r.dedup_key is None]
        by_key = {key: (job_id, state, mid) for job_id, key, state, mid in returned if key is not None}
        without_key = sorted((job_id, state, mid) for job_id, key, state, mid in returned if key is None)
        for row, (job_id, state, message_id) in zip(fresh, without_key, strict=True):
            row.ref, row.message_id = JobRef(job_id, True, state), message_id
        conflicted: list[Row] = []
        for row in pending:
            if row.dedup_key is None:
                continue
            if row.dedup_key in by_key:
                job_id, state, message_id = by_key.pop(row.dedup_key)
                row.ref, row.message_id = JobRef(job_id, True, state), message_id
            else:
                conflicted.append(row)
        if not conflicted:
            return
        holders = {
            key: (job_id, state, expired)
            for key, job_id, state, expired in conn.execute(
                ledger_sql.JOB_FIND_DEDUP, ([r.dedup_key for r in conflicted],)
            ).fetchall()
        }
        pending = []
        for row in conflicted:
            holder = holders.get(row.dedup_key)
            if holder is None:  # released while we looked: try again
                pending.append(row)
            elif holder[2]:  # its window passed: release it, then try again
                conn.execute(ledger_sql.JOB_RELEASE_EXPIRED_DEDUP, (row.dedup_key,))
                pending.append(row)
            else:
                row.ref = JobRef(holder[0], False, holder[1])
        if not pending:
            return
    raise EnqueueError(f"could not settle dedup keys {[r.dedup_key for r in pending]}: they keep changing")


# The Row fields that are statement parameters.
_PARAMETERS = (
    "actor",
    "queue",
    "args",
    "kwargs",
    "dedup_key",
    "dedup_window_s",
    "delay_s",
    "eta",
    "max_attempts",
    "priority",
    "flow_key",
)


def _one(row: Row, enqueued_by: str, send: bool) -> dict[str, Any]:
    return {"enqueued_by": enqueued_by, "send": send} | {name: getattr(row, name) for name in _PARAMETERS}


def _columns(rows: list[Row], enqueued_by: str, send: bool) -> dict[str, Any]:
    columns = {name: [getattr(r, name) for r in rows] for name in _PARAMETERS}
    return {"enqueued_by": enqueued_by, "send": send} | columns


# ---- validation -------------------------------------------------------------------------------


# ---- the caller's connection ------------------------------------------------------------------


@contextmanager
def _psycopg_connection(conn: Any):
    """The psycopg connection under what the caller gave, or one of the pool's."""
    if conn is None:
        with pool.connection() as pooled:
            yield pooled
        return
    if isinstance(conn, psycopg.Connection):
        yield conn
        return
    try:
        from sqlalchemy.engine import Connection
        from sqlalchemy.orm import Session
    except ImportError:  # pragma: no cover - SQLAlchemy is a dependency
        Connection = Session = ()  # type: ignore[assignment,misc]
    if isinstance(conn, Session):
        conn = conn.connection()
    if isinstance(conn, Connection):
        if not conn.in_transaction():
            conn.begin()  # so that the caller's commit() commits the job too
        dbapi = conn.connection.dbapi_connection
        if isinstance(dbapi, psycopg.Connection):
            yield dbapi
            return
    raise EnqueueError(
        f"conn must be a psycopg Connection or a SQLAlchemy Connection/Session on the psycopg driver, "
        f"got {type(conn).__name__}"
    )
