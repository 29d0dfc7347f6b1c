"""What the ledger knows about the schedule: ops switches and each entry's last tick."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from workers import ledger_sql


def last_ticks(conn: psycopg.Connection, names: list[str]) -> dict[str, dict[str, Any]]:
    """For each entry name, its newest tick: fire_time, job id, state, finished_at, last_error."""
    result: dict[str, dict[str, Any]] = {}
    with conn.cursor(row_factory=dict_row) as cur:
        for row in cur.execute(ledger_sql.JOB_LAST_TICKS, {"names": names}):
            name = row.pop("name")
            key = row.pop("dedup_key")
            result[name] = {**row, "fire_time": tick_time(key)} if row["id"] is not None else {}
    return result


def tick_time(dedup_key: str | None) -> datetime | None:
    """The scheduled time out of a tick's dedup key `cron:<name>:<iso time>`."""
    if not dedup_key or not dedup_key.startswith("cron:"):
        return None
    _cron, _name, iso = dedup_key.split(":", 2)  # entry names never contain ':'
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
