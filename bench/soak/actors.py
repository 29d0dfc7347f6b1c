"""The actors of the soak (bench/soak/), loaded by its workers through SKYPORT_EXTRA_MODULES.

Each successful run of `soak_work` / `soak_flaky` writes one row to `soak_effects` (in the
soak's own database) naming the job and the attempt it ran as, so the final check can tell a
job whose effect happened twice (and whether a kill explains it) from one that never ran.
"""

from __future__ import annotations

import os
import time

import psycopg
from dramatiq.middleware import CurrentMessage

from db import pool
from workers import actor

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS soak_effects (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key      text NOT NULL,
    job_id   bigint NOT NULL,
    attempt  integer NOT NULL,
    pid      integer NOT NULL,
    at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS soak_effects_job_idx ON soak_effects (job_id, attempt);
"""

# -- soak_effect_record -- one effect of the running attempt (the job's row says which attempt).
SOAK_EFFECT_RECORD = """
INSERT INTO soak_effects (key, job_id, attempt, pid)
SELECT %(key)s, id, attempts, %(pid)s FROM jobs WHERE id = %(job_id)s
"""


class SoakFailure(Exception):
    """A planned failure of `soak_flaky` (retried with backoff)."""


def _job_id() -> int:
    message = CurrentMessage.get_current_message()
    if message is None or message.options.get("job_id") is None:
        raise RuntimeError("soak actors run only as ledger jobs")
    return int(message.options["job_id"])


def _attempt(conn: psycopg.Connection, job_id: int) -> int:
    return conn.execute("SELECT attempts FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def _record(key: str, job_id: int) -> None:
    with pool.connection() as conn:
        conn.execute(SOAK_EFFECT_RECORD, {"key": key, "job_id": job_id, "pid": os.getpid()})


@actor(queue_name="default", max_retries=5, min_backoff_s=0.5, max_backoff_s=5, time_limit=60_000)
def soak_work(key: str, ms: int = 0) -> None:
    """Works `ms` milliseconds, then records its effect."""
    job_id = _job_id()
    time.sleep(ms / 1000)
    _record(key, job_id)


@actor(queue_name="default", max_retries=5, min_backoff_s=0.5, max_backoff_s=5, time_limit=60_000)
def soak_flaky(key: str, failures: int, ms: int = 0) -> None:
    """Fails its first `failures` attempts (crashed attempts count), then works like soak_work."""
    job_id = _job_id()
    with pool.connection() as conn:
        attempt = _attempt(conn, job_id)
    time.sleep(ms / 1000)
    if attempt <= failures:
        raise SoakFailure(f"{key}: planned failure of attempt {attempt} of {failures}")
    _record(key, job_id)


@actor(queue_name="default", max_retries=2, min_backoff_s=0.5, max_backoff_s=2, time_limit=60_000)
def soak_poison(key: str) -> None:
    """Fails every time: must end dead after its retries without holding up the queue."""
    raise ValueError(f"{key}: poison job, fails every time")
