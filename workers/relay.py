"""The outbox relay: hands committed, due, unpublished ledger rows to the broker.

It claims a batch with SKIP LOCKED (several relays share the work) and marks it published in
one statement, then publishes each row as a Dramatiq message carrying the job id (the whole
batch in one round trip on Redis). If the broker refuses, the batch is marked unpublished
again; if even that fails, the lifeline publishes those rows again after `republish_after_s`.
Publishing twice is harmless: a worker runs a message only if its job is still `queued`.
Woken by NOTIFY at commit, and sweeping on a timer for jobs whose eta came due.

LISTEN needs a session connection (`session_url`). Behind a transaction pooler without
DATABASE_DIRECT_URL there is none: the relay then listens to nothing and finds new jobs and
cancelled claims on its sweep (docs/operations.md, "Through PgBouncer").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import dramatiq
import psycopg
import redis
from dramatiq.brokers.redis import RedisBroker
from psycopg import sql

from db import pool
from workers import flow_sql, ledger, ledger_sql, wake

logger = logging.getLogger("skyport.relay")


def promote_due(conn: psycopg.Connection, batch: int) -> int:
    """Scheduled and retrying jobs that came due become queued; returns how many."""
    return conn.execute(ledger_sql.JOB_PROMOTE_DUE, {"batch": batch}).rowcount


def publish_due(
    conn: psycopg.Connection, broker: dramatiq.Broker, batch: int, *, promote: bool = True
) -> int:
    """Publish one batch of due jobs (promoting due scheduled/retrying jobs first unless
    `promote` is false); returns how many. Raises when the broker refuses, after giving the batch
    back to the ledger. `conn` must be in autocommit mode."""
    if not conn.autocommit:
        raise ValueError("publish_due needs an autocommit connection (each step commits)")
    if promote:
        promote_due(conn, batch)
    # Not prepared: planned for the table as it is now (workers/ledger.py, HOT_PATH_PLANNING).
    rows = conn.execute(ledger_sql.JOB_CLAIM_PUBLISHABLE, {"batch": batch}, prepare=False).fetchall()
    if not rows:
        return 0
    messages = [job_message(*row[:6], priority=row[6], reserved=row[7] == "rate") for row in rows]
    try:
        enqueue_all(broker, messages)
    except Exception:
        give_back(conn, [r[0] for r in rows], [m.message_id for m in messages])
        raise
    return len(rows)


def job_message(
    job_id: int,
    actor: str,
    queue: str,
    args: list[Any],
    kwargs: dict[str, Any],
    message_id: str,
    *,
    priority: int = 0,
    reserved: bool = False,
) -> dramatiq.Message:
    """The Dramatiq message of one publication of a job (the message id is new each time). A
    priority other than 0 and a reserved rate start (when it was published at it) travel in its
    options."""
    options: dict[str, Any] = {"job_id": job_id, "redis_message_id": message_id}
    if priority:
        options["priority"] = priority
    if reserved:
        options["flow_reserved"] = round(time.time(), 3)
    return dramatiq.Message(
        queue_name=queue,
        actor_name=actor,
        args=tuple(args),
        kwargs=kwargs,
        options=options,
        message_id=message_id,
    )


def priority_list(namespace: str, queue: str, priority: int) -> str:
    """The Redis list of a queue's jobs of one priority: Dramatiq's own list for 0 (the default),
    `<queue>.P<n>` for the others; consumers fetch the best first (workers/consumer.py)."""
    return f"{namespace}:{queue}" if not priority else f"{namespace}:{queue}.P{priority}"


def give_back(conn: psycopg.Connection, job_ids: list[int], message_ids: list[str]) -> None:
    """The broker refused these publications: the rows wait for a relay (woken at once)."""
    try:
        with conn.transaction():
            conn.execute(ledger_sql.JOB_UNCLAIM, {"ids": job_ids, "message_ids": message_ids})
            ledger.wake_relays(conn)
    except psycopg.Error as exc:
        count = len(job_ids)
        logger.warning("%d jobs not given back (%s); the lifeline republishes them", count, _one_line(exc))


def enqueue_all(broker: dramatiq.Broker, messages: Sequence[dramatiq.Message]) -> None:
    """Hand messages to the broker; on Redis, the whole batch in one round trip."""
    declared = broker.get_declared_queues()
    for queue in {m.queue_name for m in messages} - declared:
        broker.declare_queue(queue)
    if isinstance(broker, RedisBroker):
        send_to_redis(broker.client, broker.namespace, messages)
    else:
        for message in messages:
            broker.enqueue(message)


def send_to_redis(client: redis.Redis, namespace: str, messages: Sequence[dramatiq.Message]) -> None:
    """Dramatiq's Redis broker has no batch enqueue, so this writes, for a whole batch, what its
    enqueue script writes for one message: the encoded message under its Redis id in the hash
    `<namespace>:<queue>.msgs`, then the id at the tail of the list `<namespace>:<queue>`.
    The message id, new at each publication, is the Redis id (`redis_message_id`, which the
    consumer acknowledges). A job of priority n > 0 goes to the list of its priority instead
    (`priority_list`; its data in the queue's hash all the same). The same pipeline wakes the
    idle consumers of those queues (workers/wake.py). Tested against Dramatiq's own consumer
    (tests/integration)."""
    by_list: dict[tuple[str, str], dict[str, bytes]] = {}
    for message in messages:
        key = priority_list(namespace, message.queue_name, message.options.get("priority", 0))
        by_list.setdefault((f"{namespace}:{message.queue_name}", key), {})[
            message.options["redis_message_id"]
        ] = message.encode()
    with client.pipeline(transaction=False) as pipe:
        for (queue_key, list_key), encoded in by_list.items():
            pipe.hset(f"{queue_key}.msgs", mapping=encoded)  # type: ignore[arg-type]
            pipe.rpush(list_key, *encoded)
        wake.announce(pipe, namespace, {m.queue_name for m in messages})
        replies = pipe.execute(raise_on_error=False)
    stored = 2 * len(by_list)
    for reply in replies[:stored]:
        if isinstance(reply, Exception):
            raise reply
    wake.refused(replies[stored:])


class Relay(threading.Thread):
    """A thread that publishes due jobs until stopped. It also hears of cancelled jobs among
    those this process claimed (`claimed_jobs()`), and passes their ids to `on_cancel`.

    With `listen`, its connection (to `database_url`, which must keep its session then) LISTENs,
    and NOTIFYs wake it at commit; without, it polls: every `sweep_s` it publishes, and asks the
    ledger which claimed jobs were cancelled."""

    def __init__(
        self,
        database_url: str,
        broker: dramatiq.Broker,
        *,
        batch: int,
        sweep_s: float,
        listen: bool = True,
        on_cancel: Callable[[int], None] | None = None,
        claimed_jobs: Callable[[], list[int]] | None = None,
        flow_pass: Callable[[psycopg.Connection], None] | None = None,
    ) -> None:
        super().__init__(name="skyport-relay", daemon=True)
        self.database_url = database_url
        self.broker = broker
        self.batch = batch
        self.sweep_s = sweep_s
        self.listen = listen
        self.on_cancel = on_cancel
        self.claimed_jobs = claimed_jobs
        self.flow_pass = flow_pass
        self.stopping = threading.Event()
        # time.monotonic() of the earliest start a rate reserved in this process (the relay
        # publishes it then, rather than at its next sweep).
        self.due_at = float("inf")

    def wake_in_reserved(self, conn: psycopg.Connection) -> None:
        """Wake at the next start a rate reserved (jobs parked until their eta)."""
        seconds = conn.execute(flow_sql.JOB_NEXT_RESERVED).fetchone()[0]
        if seconds is not None:
            self.wake_in(float(seconds))

    def wake_in(self, seconds: float) -> None:
        """A parked job comes due in `seconds`: publish it then (on any thread)."""
        self.due_at = min(self.due_at, time.monotonic() + seconds)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        backoff_s = 0.1
        while not self.stopping.is_set():
            try:
                with pool.connect(self.database_url, autocommit=True) as conn:
                    if self.listen:
                        conn.execute(_listen(ledger_sql.RELAY_CHANNEL))
                        if self.on_cancel is not None:
                            conn.execute(_listen(ledger_sql.CANCEL_CHANNEL))
                    backoff_s = 0.1
                    self._loop(conn)
            except Exception as exc:  # broker or database down: the rows wait in the ledger
                logger.warning("relay: %s; retrying in %.1fs", _one_line(exc), backoff_s)
                self.stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    def _loop(self, conn: psycopg.Connection) -> None:
        next_sweep = 0.0
        while not self.stopping.is_set():
            now = time.monotonic()
            sweep = now >= next_sweep
            if sweep:
                next_sweep = now + self.sweep_s
                if not self.listen:
                    self._poll_cancelled(conn)
            reserved_due = now >= self.due_at
            if self.flow_pass is not None:
                self.flow_pass(conn)
            published = publish_due(conn, self.broker, self.batch, promote=sweep)
            if reserved_due:  # the next start a rate reserved, whichever process parked it
                self.due_at = float("inf")
                self.wake_in_reserved(conn)
            if published:
                logger.debug("relay: published %d jobs", published)
            # Wait for NOTIFYs (commits that inserted jobs; all those received are taken at
            # once) or the sweep timer; with more to publish, only take those already received.
            wake_at = min(next_sweep, self.due_at)
            timeout_s = 0.0 if published >= self.batch else max(0.0, wake_at - time.monotonic())
            if not self.listen:
                self.stopping.wait(timeout_s)
                continue
            for notify in conn.notifies(timeout=timeout_s, stop_after=1):
                if (
                    notify.channel == ledger_sql.CANCEL_CHANNEL
                    and self.on_cancel
                    and notify.payload.isdigit()
                ):
                    self.on_cancel(int(notify.payload))

    def _poll_cancelled(self, conn: psycopg.Connection) -> None:
        """Without LISTEN: the claimed jobs that were cancelled since, told to `on_cancel`."""
        if self.on_cancel is None or self.claimed_jobs is None:
            return
        claimed = self.claimed_jobs()
        if claimed:
            for (job_id,) in conn.execute(ledger_sql.JOB_CANCELLED_AMONG, {"ids": claimed}).fetchall():
                self.on_cancel(job_id)


def _listen(channel: str) -> sql.Composed:
    return sql.SQL("LISTEN {}").format(sql.Identifier(channel))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
