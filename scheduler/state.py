"""What the ledger knows about the schedule: ops switches and each entry's last tick."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from workers import ledger_reads_sql

# The dedup key prefix of runs asked for by ops (ticks have `cron:`).
MANUAL_PREFIX = "manual:"


def last_ticks(conn: psycopg.Connection, names: list[str]) -> dict[str, dict[str, Any]]:
    """For each entry name, its newest scheduled tick: fire_time, job id, state, finished_at,
    last_error (runs asked for by ops are not ticks: the catch-up after a restart ignores them)."""
    return _newest(conn, ledger_reads_sql.JOB_LAST_TICKS, names)


def last_runs(conn: psycopg.Connection, names: list[str]) -> dict[str, dict[str, Any]]:
    """For each entry name, its newest run, a tick or a "run now": the tick's `fire_time` (the time
    "run now" was asked), `manual` (True for "run now"), who enqueued it, job id, state, finished_at,
    last_error; an entry that never ran maps to {}."""
    return _newest(conn, ledger_reads_sql.JOB_LAST_RUNS, names)


def _newest(conn: psycopg.Connection, statement: str, names: list[str]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(statement, {"names": names}):
            name = row.pop("name")
            key = row.pop("dedup_key")
            if row["id"] is None:
                result[name] = {}
                continue
            manual = bool(key) and key.startswith(MANUAL_PREFIX)
            result[name] = {**row, "fire_time": tick_time(key), "manual": manual}
    return result


def manual_key(name: str, at: datetime) -> str:
    """The dedup key of a run asked for by ops: unique per request, found by `last_runs`."""
    return f"{MANUAL_PREFIX}{name}:{at.isoformat()}"


def tick_time(dedup_key: str | None) -> datetime | None:
    """The scheduled time out of a tick's dedup key `cron:<name>:<iso time>` (for a "run now",
    `manual:<name>:<iso time>`, the time it was asked)."""
    if not dedup_key or not dedup_key.startswith(("cron:", MANUAL_PREFIX)):
        return None
    _kind, _name, iso = dedup_key.split(":", 2)  # entry names never contain ':'
    try:
        return datetime.fromisoformat(iso)
    except ValueError:
        return None


def overrides(conn: psycopg.Connection) -> dict[str, bool]:
    return dict(conn.execute("SELECT name, enabled FROM schedule_overrides").fetchall())


def is_switched_off(conn: psycopg.Connection, name: str) -> bool:
    row = conn.execute("SELECT enabled FROM schedule_overrides WHERE name = %s", (name,)).fetchone()
    return row is not None and not row[0]


def set_enabled(conn: psycopg.Connection, name: str, enabled: bool, by: str) -> None:
    """Persist an ops switch (the scheduler reads it at every tick)."""
    conn.execute(
        """INSERT INTO schedule_overrides (name, enabled, changed_by) VALUES (%s, %s, %s)
           ON CONFLICT (name) DO UPDATE
              SET enabled = EXCLUDED.enabled, changed_by = EXCLUDED.changed_by, changed_at = now()""",
        (name, enabled, by),
    )
