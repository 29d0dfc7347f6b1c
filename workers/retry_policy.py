"""When a failed attempt is tried again, and after how long.

Per-actor options (declared by the ledger middleware): `max_retries`, `min_backoff_s`,
`max_backoff_s`, `retry_when(attempt, exception) -> bool`, and `throws` (exception classes that
are expected and never retried). `PermanentError` is never retried either.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import dramatiq

# First retry after about this many seconds unless the actor sets `min_backoff_s`.
DEFAULT_MIN_BACKOFF_S = 5.0
# Retries never wait longer than this unless the actor sets `max_backoff_s`.
DEFAULT_MAX_BACKOFF_S = 3600.0


class PermanentError(Exception):
    """Raise from a job when trying again cannot help (bad input, a refused request): the job
    goes straight to dead with this message."""


def backoff_s(
    attempt: int, min_s: float = DEFAULT_MIN_BACKOFF_S, max_s: float = DEFAULT_MAX_BACKOFF_S
) -> float:
    """Exponential backoff with "equal jitter": half fixed, half random, capped at `max_s`."""
    ceiling = min(max_s, min_s * 2 ** max(attempt - 1, 0))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def retry_delay_s(
    options: Mapping[str, Any], attempt: int, max_attempts: int, exception: BaseException
) -> float | None:
    """Seconds until the next attempt, or None when the job is dead."""
    if isinstance(exception, PermanentError):
        return None
    throws = options.get("throws")
    if throws and isinstance(exception, throws):
        return None
    if attempt >= max_attempts:
        return None
    retry_when = options.get("retry_when")
    if retry_when is not None and not retry_when(attempt, exception):
        return None
    if isinstance(exception, dramatiq.Retry) and exception.delay is not None:
        return exception.delay / 1000  # Dramatiq's Retry carries milliseconds
    return backoff_s(
        attempt,
        options.get("min_backoff_s", DEFAULT_MIN_BACKOFF_S),
        options.get("max_backoff_s", DEFAULT_MAX_BACKOFF_S),
    )
