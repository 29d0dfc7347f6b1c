"""Actors of the topology tests (loaded by their workers through SKYPORT_EXTRA_MODULES, next to
tests.actors): they record into the `effects` table as tests.actors does."""

from __future__ import annotations

import time

from tests.actors import record
from workers import actor


@actor(queue_name="default", max_retries=3, min_backoff_s=0.2, max_backoff_s=1)
def first_run_naps(key: str, seconds: float, fail: bool = False) -> None:
    """Records `<key>:start`. Its first run then sleeps `seconds` touching no database (and fails
    at the end when `fail`); any later run finishes at once. A host cut off from PostgreSQL while
    the first run sleeps thus ends it with nothing pending but the ledger's own write of its
    outcome: the write the test watches arrive late."""
    if record(f"{key}:start") == 1:
        time.sleep(seconds)
        if fail:
            raise RuntimeError(f"{key}: the first run fails")
