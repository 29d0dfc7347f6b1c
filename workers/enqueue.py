"""The apps' way in: `enqueue` and `enqueue_many` write ledger rows.

A row is the job. Given the app's connection, the row is written in the app's open transaction
and exists only if that transaction commits; the relay hands committed rows to the broker.
Without one, the rows commit at once and enqueue hands them to Redis itself right after, as
Dramatiq's `send` would (the relay takes over if Redis refuses them).
Dedup keys are enforced by the unique index on `jobs.dedup_lock` (INSERT .. ON CONFLICT DO
NOTHING), never by a check-then-insert.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import psycopg
import redis

import config
from db import pool
from workers import ledger_sql, relay

# Retries an actor gets unless it sets `max_retries` (so max_retries + 1 attempts in all).
DEFAULT_MAX_RETRIES = 10
# Attempts to resolve a dedup conflict whose holder is finishing at the same moment.
_DEDUP_RESOLVE_TRIES = 5
# After Redis refused jobs sent at enqueue, enqueue leaves publishing to the relay this long.
DEFAULT_SEND_PAUSE_S = 5.0
# A Redis that does not answer within this long makes enqueue leave its jobs to the relay.
DEFAULT_SEND_TIMEOUT_S = 1.0

logger = logging.getLogger("skyport.enqueue")
_sending_paused_until = 0.0


class EnqueueError(ValueError):
    """The job cannot be enqueued as asked (unknown actor or queue, bad arguments, bad delay)."""


@dataclass(frozen=True)
class JobRef:
    """What enqueue returns: the job's id, and whether this call created it."""

    id: int
    created: bool
    state: str


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue (the arguments of `enqueue`, for `enqueue_many`)."""

    actor: dramatiq.Actor | str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] | None = None
    dedup_key: str | None = None
    dedup_window: timedelta | float | None = None
    delay: timedelta | float | None = None
    eta: datetime | None = None
    queue: str | None = None


@dataclass
class _Row:
    actor: str
    queue: str
    args: str
    kwargs: str
    dedup_key: str | None
    dedup_window_s: float | None
    delay_s: float | None
    eta: datetime | None
    max_attempts: int
    call: tuple[list[Any], dict[str, Any]]  # the arguments as given (for a message sent at once)
    ref: JobRef | None = field(default=None)
    message_id: str | None = None  # set when the row was inserted published (sent at once)


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
) -> JobRef:
    """Enqueue one job; returns its reference (an existing job's for a taken dedup key).

    `delay` (seconds or timedelta) or `eta` (aware datetime) hold the job as `scheduled` until
    then. `dedup_window` keeps the dedup key blocked that long after the job finished. `conn` is
    the app's psycopg connection, SQLAlchemy Connection or Session: the job then commits or
    rolls back with the app's transaction. Without it the job is committed at once and sent to Redis.
    """
    spec = JobSpec(actor, args, kwargs, dedup_key, dedup_window, delay, eta, queue)
    return enqueue_many([spec], conn=conn, enqueued_by=enqueued_by)[0]


def enqueue_many(jobs: Iterable[JobSpec], *, conn: Any = None, enqueued_by: str = "app") -> list[JobRef]:
    """Enqueue a batch in one statement; references come back in the order given."""
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


def _send(conn: psycopg.Connection, rows: list[_Row]) -> None:
    """Hand jobs that just committed (inserted as published) to Redis, as the relay would.
    If Redis refuses, they are marked unpublished for the relay, which publishes them when Redis
    is back, and enqueue stops sending for a while; if even that write fails, the lifeline
    publishes them again after `republish_after_s`. Either way the jobs are enqueued."""
    global _sending_paused_until
    if not rows:
        return
    messages = [
        relay.job_message(r.ref.id, r.actor, r.queue, r.call[0], r.call[1], r.message_id)  # type: ignore[union-attr]
        for r in rows
    ]
    cfg = config.get()
    try:
        relay.send_to_redis(_redis_client(cfg.broker.url), cfg.broker.namespace, messages)
    except redis.RedisError as exc:
        _sending_paused_until = time.monotonic() + DEFAULT_SEND_PAUSE_S
        logger.warning("Redis refused %d new jobs (%s); the relay publishes them", len(rows), exc)
        relay.give_back(conn, [m.options["job_id"] for m in messages], [m.message_id for m in messages])


@functools.lru_cache(maxsize=4)
def _redis_client_of_process(pid: int, url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url, socket_timeout=DEFAULT_SEND_TIMEOUT_S, socket_connect_timeout=DEFAULT_SEND_TIMEOUT_S
    )


def _redis_client(url: str) -> redis.Redis:
    return _redis_client_of_process(os.getpid(), url)  # a forked child gets its own connections


def _sends_at_once(conn: Any) -> bool:
    """Jobs enqueued outside a caller's transaction are sent to Redis right after their commit."""
    if conn is not None or time.monotonic() < _sending_paused_until:
        return False
    return config.get().broker.kind == "redis"


def _insert(conn: psycopg.Connection, rows: list[_Row], enqueued_by: str, send: bool) -> None:
    """Insert the rows (marked published when `send`: the caller sends them right after the
    commit); each row gets its reference, an existing job's for a dedup key that is taken."""
    pending = rows
    for _ in range(_DEDUP_RESOLVE_TRIES):
        if len(pending) == 1:
            returned = conn.execute(ledger_sql.JOB_INSERT_ONE, _one(pending[0], enqueued_by, send)).fetchall()
        else:
            returned = conn.execute(ledger_sql.JOB_INSERT, _columns(pending, enqueued_by, send)).fetchall()
        fresh = [r for r in pending if r.dedup_key is None]
        by_key = {key: (job_id, state, mid) for job_id, key, state, mid in returned if key is not None}
        without_key = sorted((job_id, state, mid) for job_id, key, state, mid in returned if key is None)
        for row, (job_id, state, message_id) in zip(fresh, without_key, strict=True):
            row.ref, row.message_id = JobRef(job_id, True, state), message_id
        conflicted: list[_Row] = []
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


# The _Row fields that are statement parameters.
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
)


def _one(row: _Row, enqueued_by: str, send: bool) -> dict[str, Any]:
    return {"enqueued_by": enqueued_by, "send": send} | {name: getattr(row, name) for name in _PARAMETERS}


def _columns(rows: list[_Row], enqueued_by: str, send: bool) -> dict[str, Any]:
    columns = {name: [getattr(r, name) for r in rows] for name in _PARAMETERS}
    return {"enqueued_by": enqueued_by, "send": send} | columns


# ---- validation -------------------------------------------------------------------------------


def resolve_actor(actor: dramatiq.Actor | str) -> dramatiq.Actor:
    from workers.broker import broker  # the actors this process declared (jobs.registry: every one)

    name = actor.actor_name if isinstance(actor, dramatiq.Actor) else actor
    try:
        return broker.get_actor(name)
    except dramatiq.ActorNotFound:
        known = ", ".join(sorted(broker.get_declared_actors())) or "none"
        raise EnqueueError(
            f"unknown actor {name!r} (known actors: {known}; `import skyport.app` declares every "
            "job family's actors and SKYPORT_EXTRA_MODULES)"
        ) from None


# Computing a signature costs more than the rest of the validation; an actor's function is fixed.
_signature = functools.lru_cache(maxsize=1024)(inspect.signature)


def _seconds(name: str, value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise EnqueueError(f"{name} must be seconds or a timedelta, got {value!r}")
    if seconds < 0:
        raise EnqueueError(f"{name} must not be negative, got {seconds}")
    return float(seconds)


def _json(name: str, value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise EnqueueError(f"{name} must be JSON-serializable: {exc}") from None


def validate_spec(spec: JobSpec) -> _Row:
    """Check a job before it is written; raises EnqueueError saying what is wrong."""
    actor = resolve_actor(spec.actor)
    queue = spec.queue or actor.queue_name
    declared = actor.broker.get_declared_queues()
    if queue not in declared:
        raise EnqueueError(f"unknown queue {queue!r} (declared queues: {', '.join(sorted(declared))})")
    args = list(spec.args)
    kwargs = dict(spec.kwargs or {})
    try:
        _signature(actor.fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise EnqueueError(f"invalid arguments for {actor.actor_name}: {exc}") from None
    if spec.eta is not None and spec.delay is not None:
        raise EnqueueError("give either delay or eta, not both")
    if spec.eta is not None and (not isinstance(spec.eta, datetime) or spec.eta.tzinfo is None):
        raise EnqueueError(f"eta must be a timezone-aware datetime, got {spec.eta!r}")
    if spec.dedup_window is not None and spec.dedup_key is None:
        raise EnqueueError("dedup_window needs a dedup_key")
    if spec.dedup_key is not None and (not isinstance(spec.dedup_key, str) or not spec.dedup_key):
        raise EnqueueError(f"dedup_key must be a non-empty string, got {spec.dedup_key!r}")
    max_retries = actor.options.get("max_retries", DEFAULT_MAX_RETRIES)
    return _Row(
        actor=actor.actor_name,
        queue=queue,
        args=_json("args", args),
        kwargs=_json("kwargs", kwargs),
        dedup_key=spec.dedup_key,
        dedup_window_s=_seconds("dedup_window", spec.dedup_window),
        delay_s=_seconds("delay", spec.delay),
        eta=spec.eta,
        max_attempts=max_retries + 1,
        call=(args, kwargs),
    )


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
