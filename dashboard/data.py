"""What each page shows, gathered once for both the HTML page and its JSON twin."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

import config
from dashboard import domain, queries
from jobs import registry
from scheduler import schedule, state
from workers import ledger, stats

# Span of "dead jobs in the last hour" on the overview.
DEAD_WARNING_SPAN = timedelta(hours=1)


def declared_queues() -> list[str]:
    return sorted(registry.broker.get_declared_queues())


def overview(
    conn: psycopg.Connection, range_key: str = "1h", queue: str | None = None, actor: str | None = None
) -> dict[str, Any]:
    """Counts, the rollup's charts for the range (of one queue or actor when given), queue depths,
    workers, scheduler ticks, the families' sections and the warnings."""
    cfg = config.get()
    data: dict[str, Any] = {
        "counts": stats.state_counts(conn, ledger.JobState),
        "stats": stats.read_range(conn, range_key, queue, actor),
        "workers": queries.workers(conn, cfg.worker.dead_after_s),
        "periodic": periodic(conn),
        "dead_last_hour": queries.dead_recently(conn, DEAD_WARNING_SPAN),
    }
    if cfg.broker.kind == "redis":
        try:
            data["queues"] = queries.queue_depths(cfg.broker.url, cfg.broker.namespace, declared_queues())
        except Exception as exc:  # the broker down is a warning on the page, not an error page
            data["queues"] = []
            data["broker_error"] = f"{type(exc).__name__}: {exc}"
    else:
        data["queues"] = []
        data["broker_error"] = "queue depths are read from Redis; this broker is RabbitMQ"
    data["domain"] = domain.read_all(conn)
    data["warnings"] = warnings(data)
    return data


def warnings(data: dict[str, Any]) -> list[str]:
    found = []
    if data["dead_last_hour"]:
        found.append(f"{data['dead_last_hour']} job(s) went dead in the last hour")
    if data.get("broker_error"):
        found.append(f"broker: {data['broker_error']}")
    if not any(w["alive"] for w in data["workers"]):
        found.append("no worker is alive (no heartbeat)")
    return found + domain.warnings(data["domain"])


def periodic(conn: psycopg.Connection) -> list[dict[str, Any]]:
    """Every schedule entry: trigger, enabled (code/config and ops switch), next and last fire."""
    entries = schedule.load_schedule()
    switched = state.overrides(conn)
    last = state.last_runs(conn, [e.name for e in entries])
    now = datetime.now(UTC)
    result = []
    for entry in entries:
        enabled = switched.get(entry.name, entry.enabled)
        try:
            next_fire = entry.build_trigger().get_next_fire_time(None, now) if enabled else None
            error = None
        except schedule.ScheduleError as exc:
            next_fire, error = None, str(exc)
        result.append(
            {
                "name": entry.name,
                "actor": entry.actor,
                "trigger": entry.trigger,
                "timezone": entry.timezone,
                "enabled": enabled,
                "switched_by_ops": entry.name in switched,
                "next_fire": next_fire,
                "last": last.get(entry.name) or {},
                "error": error,
            }
        )
    return result


def job_detail(conn: psycopg.Connection, job_id: int) -> dict[str, Any] | None:
    job = ledger.get_job(conn, job_id)
    if job is None:
        return None
    job["audit"] = queries.audit_list(conn, table_name="jobs", record_id=str(job_id), limit=100)
    job["related"] = related_rows(conn, job)
    return job


# Argument names that point at a business row, and where that row lives.
RELATED_KEYS = {
    "queue_id": ("notification_queue", "queue_id"),
    "notification_id": ("notification_queue", "queue_id"),
    "quote_id": ("quotes", "quote_id"),
    "shipment_id": ("shipments", "shipment_id"),
    "event_id": ("payment_events", "event_id"),
}


# Actors whose first positional argument is a business row's key.
RELATED_BY_ACTOR = {"process_payment_event": ("payment_events", "id")}


def related_rows(conn: psycopg.Connection, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The business rows a job worked on, found from its arguments (when their table exists)."""
    from psycopg import sql
    from psycopg.rows import dict_row

    refs = [(*RELATED_KEYS[k], v) for k, v in (job.get("kwargs") or {}).items() if k in RELATED_KEYS]
    if job["actor"] in RELATED_BY_ACTOR and job.get("args"):
        refs.append((*RELATED_BY_ACTOR[job["actor"]], job["args"][0]))
    found = []
    for table, column, value in refs:
        if value is None:
            continue
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        if not exists:
            continue
        query = sql.SQL("SELECT * FROM {} WHERE {}::text = %s LIMIT 1").format(
            sql.Identifier(table), sql.Identifier(column)
        )
        with conn.cursor(row_factory=dict_row) as cur:
            try:
                with conn.transaction():
                    row = cur.execute(query, (str(value),)).fetchone()
            except psycopg.Error:
                continue
        if row:
            found.append({"table": table, "key": f"{column}={value}", "row": row})
    return found


# The console page of each audit target's table (a job's own page; the others' lists).
AUDIT_TARGET_PAGES = {
    "schedule": "/periodic",
    "notification_queue": "/queues",
    "payment_events": "/queues",
    "matview": "/queues",
    "console_sessions": "/sessions",
    "flow_controls": "/queues",
}


def audit_entries(
    conn: psycopg.Connection, kind: str, limit: int, before_id: int | None
) -> list[dict[str, Any]]:
    """The audit log, newest first, each entry with `target_url`: its target's console page (None
    for a table the console has no page for)."""
    rows = queries.audit_list(conn, kind=kind, limit=limit, before_id=before_id)
    for row in rows:
        if row["table_name"] == "jobs":
            row["target_url"] = f"/jobs/{row['record_id']}"
        else:
            row["target_url"] = AUDIT_TARGET_PAGES.get(row["table_name"])
    return rows
