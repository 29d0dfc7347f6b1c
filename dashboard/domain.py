"""The job families' ops views, through the plain functions they expose (when they exist).

Each family is optional: a module or function that is not there yet shows nothing (no stub page).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("skyport.dashboard")


def family_function(module: str, name: str) -> Callable[..., Any] | None:
    """`module.name` if that job family provides it, else None."""
    try:
        mod = importlib.import_module(module)
    except ImportError:
        return None
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


# (section, module, function) read by the Domain queues page and the overview warnings.
READS: tuple[tuple[str, str, str], ...] = (
    ("partition_coverage", "jobs.partitions", "coverage"),
    ("matview_staleness", "jobs.matviews", "staleness"),
    ("payment_problems", "jobs.payments", "problem_events"),
    ("payment_drift", "jobs.payments", "drift"),
    ("dead_notifications", "jobs.notifications", "dead_rows"),
)


def available() -> dict[str, Callable[..., Any]]:
    return {section: fn for section, module, name in READS if (fn := family_function(module, name))}


def read_all(conn: Any) -> dict[str, Any]:
    """Every available section's rows; a family function that fails shows its error, not a 500."""
    result: dict[str, Any] = {}
    for section, fn in available().items():
        try:
            result[section] = fn(conn)
        except Exception as exc:  # a family's bug must not take the dashboard down
            logger.exception("dashboard: %s failed", section)
            result[section] = {"error": f"{type(exc).__name__}: {exc}"}
    return result
