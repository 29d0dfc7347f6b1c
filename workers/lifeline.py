"""Worker liveness and the ledger's self-repair.

Each worker process heartbeats into `workers` from its own thread, on a connection of its own
(opened again at the next beat when it breaks). The maintenance pass (run by every worker every
few heartbeats, and by the scheduler) puts the running jobs of silent workers back in the queue,
and republishes queued jobs the broker seems to have lost.

A PostgreSQL restart silences every worker at once: nobody can heartbeat while it is down. So
for `worker_dead_after_s` after the server started, the pass recovers nothing: the workers that
are alive get that long to beat again before their running jobs count as lost.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

import psycopg

import config
from db import pool
from workers import ledger, ledger_sql

logger = logging.getLogger("skyport.lifeline")

# The maintenance pass runs every this many heartbeats.
DEFAULT_MAINTENANCE_EVERY = 3
# Seconds the heartbeat thread waits for a new connection to PostgreSQL.
DEFAULT_CONNECT_TIMEOUT_S = 5


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


# Neither function below retries: both are handed a connection, and a lost connection stays lost.
# Their callers run them again with a new one (the next beat, the next pass).


def heartbeat(conn: psycopg.Connection, worker_id: str, queues: list[str] | None) -> None:
    conn.execute(ledger_sql.WORKER_HEARTBEAT, (worker_id, socket.gethostname(), os.getpid(), queues))


def forget_worker(conn: psycopg.Connection, worker_id: str) -> None:
    conn.execute(ledger_sql.WORKER_FORGET, (worker_id,))


def maintenance_pass(conn: psycopg.Connection, cfg: config.Config | None = None) -> dict[str, int]:
    """Recover jobs of dead workers and republish stale queued jobs; returns the counts."""
    cfg = cfg or config.get()
    if _server_started_within(conn, cfg.worker.dead_after_s):
        logger.info(
            "PostgreSQL started less than %.0fs ago: no job recovery until the workers could beat again",
            cfg.worker.dead_after_s,
        )
        recovered = []
    else:
        recovered = ledger.recover_lost_jobs(conn, cfg.worker.dead_after_s)
    for job_id, state in recovered:
        logger.warning("job %s: its worker stopped heartbeating; now %s", job_id, state)
    if recovered:
        ledger.wake_relays(conn)
    republished = ledger.republish_stale(conn, cfg.worker.republish_after_s)
    if republished:
        logger.warning("republished %d queued jobs that no worker started", republished)
    conn.execute(ledger_sql.WORKER_PRUNE_SILENT, (cfg.worker.dead_after_s,))
    return {"recovered": len(recovered), "republished": republished}


def _server_started_within(conn: psycopg.Connection, seconds: float) -> bool:
    return conn.execute(
        "SELECT pg_postmaster_start_time() > now() - make_interval(secs => %s::float8)", (seconds,)
    ).fetchone()[0]


class Heartbeat(threading.Thread):
    """Beats every `interval_s`; runs the maintenance pass every few beats."""

    def __init__(self, worker_id: str, queues: list[str] | None, cfg: config.Config) -> None:
        super().__init__(name="skyport-heartbeat", daemon=True)
        self.worker_id = worker_id
        self.queues = queues
        self.cfg = cfg
        self.stopping = threading.Event()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        beats = 0
        conn: psycopg.Connection | None = None
        try:
            while not self.stopping.wait(self.cfg.worker.heartbeat_interval_s):
                beats += 1
                try:
                    if conn is None or conn.closed:
                        # A direct connection when there is one: behind a busy transaction pooler a
                        # heartbeat queues with the work, and a late one makes a live worker dead.
                        conn = pool.connect(
                            self.cfg.database.direct_url or self.cfg.database.url,
                            autocommit=True,
                            connect_timeout=DEFAULT_CONNECT_TIMEOUT_S,
                        )
                    heartbeat(conn, self.worker_id, self.queues)
                    if beats % DEFAULT_MAINTENANCE_EVERY == 0:
                        maintenance_pass(conn, self.cfg)
                except psycopg.OperationalError as exc:  # PostgreSQL away: beat again next time
                    logger.warning("heartbeat failed: %s", _one_line(exc))
                    if conn is not None:
                        conn.close()
                    conn = None
                except Exception:
                    logger.exception("heartbeat failed")
        finally:
            if conn is not None:
                conn.close()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
