"""The job families' ops views and actions, through the plain functions they expose (when they exist).

Each family is optional: a module or function that is not there yet shows nothing (no stub page).
Reads: partition coverage, materialized view staleness, unmatched/rejected payment events, payment
drift, dead notifications. Actions: retry dead notifications, replay a payment event, refresh a view.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable
from typing import Any

import psycopg

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
    ("dead_notifications", "jobs.notifications", "list_dead"),
    ("payment_problems", "jobs.payments", "problem_events"),
    ("payment_drift", "jobs.payments", "drift"),
    ("partition_coverage", "jobs.partitions", "coverage"),
    ("matview_staleness", "jobs.matviews", "staleness"),
)


def available() -> dict[str, Callable[..., Any]]:
    return {section: fn for section, module, name in READS if (fn := family_function(module, name))}


def _plain(row: Any) -> Any:
    if hasattr(row, "as_dict"):
        return row.as_dict()
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    return row


def read_all(conn: psycopg.Connection) -> dict[str, Any]:
    """Every available section's rows (dicts); a family function that fails shows its error, not a 500."""
    result: dict[str, Any] = {}
    for section, fn in available().items():
        try:
            rows = fn(conn)
            result[section] = [_plain(r) for r in rows] if isinstance(rows, list) else _plain(rows)
        except Exception as exc:  # a family's bug must not take the dashboard down
            logger.exception("dashboard: %s failed", section)
            result[section] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def warnings(section: str, rows: Any) -> list[str]:
    """The rows a family marks as a problem, one line each."""
    if isinstance(rows, dict):
        return [f"{section}: {rows['error']}"] if "error" in rows else []
    if section == "dead_notifications" and rows:
        return [f"{len(rows)} dead notification(s)"]
    if section == "payment_problems" and rows:
        return [f"{len(rows)} unmatched or rejected payment event(s)"]
    if section == "payment_drift" and rows:
        return [f"payment drift on {len(rows)} shipment(s) (amount_paid differs from its payments)"]
    lines = []
    for row in rows or []:
        if not isinstance(row, dict):
            continue
        if section == "partition_coverage" and row.get("status") not in (None, "ok"):
            lines.append(f"partitions {row.get('parent')}: {row.get('status')}: {row.get('message')}")
        if section == "matview_staleness" and row.get("stale"):
            age = row.get("staleness_s")
            lines.append(
                f"materialized view {row.get('view')} is stale"
                + (
                    f" ({age / 60:.0f} min since its last refresh)"
                    if age is not None
                    else " (never refreshed)"
                )
            )
    return lines


# ---- actions ----------------------------------------------------------------------------------


class NotAvailable(Exception):
    """The job family does not provide this action (yet)."""


def _need(module: str, name: str) -> Callable[..., Any]:
    fn = family_function(module, name)
    if fn is None:
        raise NotAvailable(f"{module}.{name} does not exist")
    return fn


def retry_notifications(conn: psycopg.Connection, user: str, queue_ids: list[int] | None) -> list[int]:
    """Retry the given dead notifications, or all of them (None). The family writes the audit rows."""
    retry = _need("jobs.notifications", "retry_dead")
    if queue_ids is None:
        queue_ids = [r["queue_id"] for r in _need("jobs.notifications", "list_dead")(conn, limit=1000)]
    return retry(conn, queue_ids, performed_by=f"ops:{user}") if queue_ids else []


def replay_payment_event(conn: psycopg.Connection, user: str, provider: str, event_id: str) -> bool:
    """Replay an unmatched or rejected event. The family writes the audit row."""
    return bool(_need("jobs.payments", "replay_event")(conn, provider, event_id, f"ops:{user}"))


def refresh_view(conn: psycopg.Connection, user: str, view: str) -> int:
    """Ask for a refresh of a materialized view now (a debounced job); returns its job id."""
    ref = _need("jobs.matviews.actors", "request_refresh")(view, conn=conn)
    return ref.id
