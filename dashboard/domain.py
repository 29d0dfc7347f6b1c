"""The job families' ops views and actions, as the families declare them (jobs/registry.py).

Reads: each family's sections (partition coverage, materialized view staleness, unmatched or
rejected payment events, payment drift, dead notifications) and the problems worth a warning.
Actions: the families' named actions (retry dead notifications, replay a payment event, refresh
a view); a name no family offers is `NotAvailable`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import psycopg

from jobs import registry

logger = logging.getLogger("skyport.dashboard")


class NotAvailable(Exception):
    """No job family offers this action."""


def _plain(row: Any) -> Any:
    if hasattr(row, "as_dict"):
        return row.as_dict()
    if dataclasses.is_dataclass(row) and not isinstance(row, type):
        return dataclasses.asdict(row)
    return row


def read_all(conn: psycopg.Connection) -> dict[str, Any]:
    """Every section's rows (dicts); a family function that fails shows its error, not a 500."""
    result: dict[str, Any] = {}
    for read in registry.console_reads():
        try:
            rows = read.read(conn)
            result[read.section] = [_plain(r) for r in rows] if isinstance(rows, list) else _plain(rows)
        except Exception as exc:  # a family's bug must not take the dashboard down
            logger.exception("dashboard: %s failed", read.section)
            result[read.section] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def warnings(sections: dict[str, Any]) -> list[str]:
    """One line per problem the families mark in their sections (as `read_all` returned them)."""
    lines = []
    for read in registry.console_reads():
        rows = sections.get(read.section)
        if isinstance(rows, dict) and "error" in rows:
            lines.append(f"{read.section}: {rows['error']}")
        elif rows:
            lines.extend(read.problems(rows))
    return lines


def act(name: str, conn: psycopg.Connection, by: str, ip: str | None, **params: Any) -> Any:
    """Run a family's action as `by` from `ip` (the family writes the audit rows)."""
    action = registry.console_action(name)
    if action is None:
        raise NotAvailable(f"no job family offers the action {name!r}")
    return action(conn, by, ip, **params)
