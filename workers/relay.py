"""The outbox relay: hands committed, due, unpublished ledger rows to the broker.

It claims a batch with SKIP LOCKED (several relays share the work), publishes each row as a
Dramatiq message carrying the job id, and commits. If the broker is down the transaction rolls
back and the rows wait in the ledger. Publishing twice is harmless: the worker runs a message
only if its job is still `queued`. Woken by NOTIFY at commit, and sweeping on a timer for jobs
whose eta came due.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
import psycopg

logger = logging.getLogger("skyport.relay")

NOTIFY_CHANNEL = "skyport_jobs"

# -- job_promote_due -- scheduled and retrying jobs whose eta passed become queued, committed on
# their own before they are published: a worker that gets the message at once must find its
# job `queued` (its conditional UPDATE waits for the publishing transaction's row lock, then sees
# the committed row; a row still `retrying` in the committed snapshot would be skipped instead).
JOB_PROMOTE_DUE = """
WITH due AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE published_at IS NULL AND state IN ('scheduled', 'retrying') AND eta <= now()
     ORDER BY eta
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j SET state = 'queued' FROM due WHERE j.id = due.id
"""

# -- job_claim_publishable -- queued rows not yet handed to the broker; a new message id per
# publication. The row locks are held until the messages are out (or the broker refused).
JOB_CLAIM_PUBLISHABLE = """
WITH due AS MATERIALIZED (
    SELECT id FROM jobs
     WHERE published_at IS NULL AND state = 'queued' AND eta <= now()
     ORDER BY eta
     LIMIT %(batch)s
       FOR UPDATE SKIP LOCKED)
UPDATE jobs j
   SET published_at = now(), message_id = gen_random_uuid()::text
  FROM due
 WHERE j.id = due.id
RETURNING j.id, j.actor, j.queue, j.args, j.kwargs, j.message_id
"""


def publish_due(conn: psycopg.Connection, broker: dramatiq.Broker, batch: int) -> int:
    """Publish one batch of due jobs; returns how many. Raises (and publishes nothing as far as
    the ledger knows) when the broker refuses. `conn` must be in autocommit mode."""
    if not conn.autocommit:
        raise ValueError("publish_due needs an autocommit connection (promotions commit first)")
    conn.execute(JOB_PROMOTE_DUE, {"batch": batch})
    with conn.transaction():
        # A publication lost with a crash only means the rows are published again (harmless).
        conn.execute("SET LOCAL synchronous_commit = off")
        rows = conn.execute(JOB_CLAIM_PUBLISHABLE, {"batch": batch}).fetchall()
        declared = broker.get_declared_queues()
        for job_id, actor, queue, args, kwargs, message_id in rows:
            if queue not in declared:
                broker.declare_queue(queue)
                declared = broker.get_declared_queues()
            broker.enqueue(
                dramatiq.Message(
                    queue_name=queue,
                    actor_name=actor,
                    args=tuple(args),
                    kwargs=kwargs,
                    options={"job_id": job_id},
                    message_id=message_id,
                )
            )
    return len(rows)


class Relay(threading.Thread):
    """A thread that publishes due jobs until stopped."""

    def __init__(self, database_url: str, broker: dramatiq.Broker, *, batch: int, sweep_s: float) -> None:
        super().__init__(name="skyport-relay", daemon=True)
        self.database_url = database_url
        self.broker = broker
        self.batch = batch
        self.sweep_s = sweep_s
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        backoff_s = 0.1
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.database_url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    backoff_s = 0.1
                    self._loop(conn)
            except Exception as exc:  # broker or database down: the rows wait in the ledger
                logger.warning("relay: %s; retrying in %.1fs", _one_line(exc), backoff_s)
                self.stopping.wait(backoff_s)
                backoff_s = min(backoff_s * 2, 5.0)

    def _loop(self, conn: psycopg.Connection) -> None:
        while not self.stopping.is_set():
            published = publish_due(conn, self.broker, self.batch)
            if published:
                logger.debug("relay: published %d jobs", published)
            if published < self.batch:
                # Wait for a NOTIFY (a commit that inserted jobs), or the sweep timer.
                for _ in conn.notifies(timeout=self.sweep_s, stop_after=1):
                    pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
