"""tenacity policies for transient PostgreSQL errors, where retrying is safe."""

from __future__ import annotations

import logging

import psycopg
from psycopg import errors
from tenacity import (
    before_sleep_log,
    retry,
    retry_if_exception_type,
    stop_after_delay,
    wait_exponential_jitter,
)

logger = logging.getLogger("skyport.db")

# Errors after which the same statement may simply be run again: the server was unreachable,
# or it rolled our transaction back to break a conflict.
TRANSIENT_ERRORS = (
    psycopg.OperationalError,
    errors.SerializationFailure,
    errors.DeadlockDetected,
)


def retry_transient(max_delay_s: float = 60.0):
    """Retry a function that is safe to re-run (guarded writes, reads) for up to `max_delay_s`."""
    return retry(
        retry=retry_if_exception_type(TRANSIENT_ERRORS),
        wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
        stop=stop_after_delay(max_delay_s),
        before_sleep=before_sleep_log(logger, logging.WARNING),
        reraise=True,
    )
