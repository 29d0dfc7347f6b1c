"""Actors used by the tests; workers started by tests load them (SKYPORT_EXTRA_MODULES).

Each records what it did in the `effects` table of the test's database (see `effects_table`),
so a test can count how often a job's effect happened.
"""

from __future__ import annotations

import os
import signal
import time

from dramatiq.middleware import CurrentMessage

from db import pool
from workers import PermanentError, actor

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS effects (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key     text NOT NULL,
    job_id  bigint,
    at      timestamptz NOT NULL DEFAULT now()
)
"""


# One statement, so the effect and its answer come together (only a commit whose acknowledgement
# is lost could still fail the job after its effect). As two (the insert, then the count), a
# connection cut between them (a PostgreSQL restart) failed a job whose effect had happened, and
# its retry wrote the effect again: at least once, as promised, but not what the tests count.
# The count cannot see the row its own statement inserts: hence the + 1.
RECORD = """
WITH added AS (INSERT INTO effects (key, job_id) VALUES (%(key)s, %(job_id)s))
SELECT count(*) + 1 FROM effects WHERE key = %(key)s
"""


def record(key: str) -> int:
    """Insert one effect row; returns how many rows the key has now."""
    message = CurrentMessage.get_current_message()
    job_id = message.options.get("job_id") if message else None
    with pool.connection() as conn:
        return conn.execute(RECORD, {"key": key, "job_id": job_id}).fetchone()[0]


@actor(queue_name="default", max_retries=3, min_backoff_s=0.2, max_backoff_s=1)
def remember(key: str) -> None:
    record(key)


@actor(queue_name="default", max_retries=3, min_backoff_s=0.5, max_backoff_s=1)
def flaky(key: str, failures: int) -> None:
    """Fails its first `failures` runs, then succeeds."""
    if record(key) <= failures:
        raise RuntimeError(f"flaky failure for {key}")


@actor(queue_name="default", max_retries=2, min_backoff_s=0.1, max_backoff_s=0.2)
def poison(key: str) -> None:
    record(key)
    raise ValueError("poison message: fails every time")


@actor(queue_name="default", max_retries=4, min_backoff_s=0.5, max_backoff_s=1)
def poison_slowly(key: str) -> None:
    """A poison message whose retries take a few seconds to run out."""
    record(key)
    raise ValueError("poison message: fails every time")


@actor(queue_name="default", max_retries=5)
def refuse(key: str) -> None:
    record(key)
    raise PermanentError("refused: trying again cannot help")


class ExpectedRefusal(Exception):
    """The error `expected` declares with `throws=`: its job goes dead at once."""


@actor(queue_name="default", max_retries=5, throws=(ExpectedRefusal,))
def expected(key: str) -> None:
    record(key)
    raise ExpectedRefusal("declared with throws")


@actor(queue_name="default", max_retries=3, min_backoff_s=0.2)
def slow(key: str, seconds: float) -> None:
    record(f"{key}:start")
    time.sleep(seconds)
    record(f"{key}:done")


@actor(queue_name="default", max_retries=3, min_backoff_s=0.2, max_backoff_s=1)
def step(key: str, seconds: float) -> None:
    """Works `seconds`, then records its effect: one effect row per successful run."""
    time.sleep(seconds)
    record(key)


@actor(queue_name="default", max_retries=2, min_backoff_s=0.2, max_backoff_s=0.5, time_limit=1000)
def overrun_once(key: str, seconds: float) -> None:
    """Overruns its 1 s time limit the first time (in short sleeps: the limit's exception is only
    raised between Python bytecodes), then finishes at once."""
    if record(f"{key}:start") == 1:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            time.sleep(0.02)
    record(f"{key}:done")


@actor(queue_name="default", max_retries=2, min_backoff_s=0.1)
def crash_worker(key: str) -> None:
    """Kills its own worker process, every time."""
    record(key)
    os.kill(os.getpid(), signal.SIGKILL)


@actor(queue_name="other", max_retries=0)
def on_other_queue(key: str) -> None:
    record(key)


@actor(queue_name="default", max_retries=0)
def leak(email: str) -> None:
    """Fails with personal data in its error (Sentry must scrub it)."""
    raise RuntimeError(f"cannot deliver to {email}, card 4111 1111 1111 1111, phone +44 20 7946 0958")


# ---- flow control (tests/e2e/test_flow_control.py) --------------------------------------------


@actor(queue_name="flow", max_retries=3, concurrency=3)
def limited(key: str, seconds: float) -> None:
    """At most 3 running at once, fleet-wide."""
    time.sleep(seconds)
    record(key)


@actor(queue_name="flow", max_retries=3, concurrency=1, concurrency_key=lambda shipment, seconds: shipment)
def per_shipment(shipment: str, seconds: float) -> None:
    """At most 1 running per shipment, fleet-wide."""
    time.sleep(seconds)
    record(shipment)


@actor(queue_name="flow", max_retries=3, rate_limit="20/s")
def rated(key: str) -> None:
    """At most 20 starts a second, fleet-wide."""
    record(key)


@actor(queue_name="bulk", max_retries=3)
def noop(key: str) -> None:
    """Does nothing (the priority test's filler)."""


@actor(queue_name="flow", max_retries=0)
def hold(key: str, seconds: float) -> None:
    """Holds a slot of the `flow` queue for a while; never retried (a crash makes it dead)."""
    record(f"{key}:start")
    time.sleep(seconds)


@actor(queue_name="flow", max_retries=3)
def flow_step(key: str) -> None:
    record(key)
