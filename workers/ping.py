"""The built-in `ping` actor: the smoke test of the whole pipeline (`skyport ping`)."""

from __future__ import annotations

import time

from workers import actor


@actor(queue_name="default", max_retries=0)
def ping(seconds: float = 0.0) -> None:
    """Do nothing, or sleep `seconds` (to test shutdown, time limits, kill -9)."""
    if seconds:
        time.sleep(seconds)
