"""Dead jobs grouped by their error (class and message, digits folded so the same error about
different records is one group): how many, first and last seen, which actors and queues; and
"retry all of these" for one group (admin, audited per job like any retry)."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dashboard import actions, queries
from workers import ledger_reads_sql

# Groups shown at most (the biggest first).
DEFAULT_GROUPS = 100
# "Python.Name: message" (the ledger stores an error as its class, a colon and its text).
_CLASS = re.compile(r"([A-Za-z_][\w.]*): (.*)", re.S)


def split_error(text: str) -> tuple[str, str]:
    """(error class, message) of an error text; the class is empty when the text names none."""
    match = _CLASS.match(text)
    return (match.group(1), match.group(2)) if match else ("", text)


def groups(conn: psycopg.Connection, limit: int = DEFAULT_GROUPS) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(ledger_reads_sql.JOB_DEAD_GROUPS, {"limit": limit}).fetchall()
    for row in rows:
        row["error_class"], row["message"] = split_error(row["error_group"])
    return rows


def retry_group(conn: psycopg.Connection, who: actions.Actor, error_group: str) -> actions.ActionResult:
    """Retry every dead job of one group (at most queries.MAX_BULK per request)."""
    params = {"error_group": error_group, "limit": queries.MAX_BULK}
    ids = [row[0] for row in conn.execute(ledger_reads_sql.JOB_DEAD_IDS_IN_GROUP, params)]
    if not ids:
        return actions.ActionResult("no dead job has this error any more: nothing retried")
    return actions.retry_jobs(conn, who, ids, scope=f"failures: {error_group[:200]}")
