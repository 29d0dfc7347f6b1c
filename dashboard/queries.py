"""The dashboard's own reads: the jobs list (filters, keyset pages),
workers and their current jobs, queue depths from the broker, the audit log.

Ledger writes and generic reads are workers/ledger.py's; scheduler reads are scheduler/state.py's.
The statements on the ledger tables are in workers/ (ledger_sql.py, ledger_reads_sql.py); the
audit log's are here.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
import redis
from psycopg import sql
from psycopg.rows import dict_row

from dashboard.validate import MAX_BIGINT
from workers import ledger_reads_sql
from workers.consumer import PRIORITIES
from workers.relay import priority_list

# Rows per jobs-list page.
DEFAULT_PAGE_SIZE = 50
# The longest page a caller may ask for.
MAX_PAGE_SIZE = 500
# Jobs a "retry all dead matching" acts on at most in one request.
MAX_BULK = 10_000
_ID_TEXT = re.compile(r"[0-9]{1,19}\Z")


@dataclass(frozen=True)
class JobFilter:
    """What the jobs list shows; every field optional. `text` is a job id or text in the arguments.
    The values come checked by the console's validation layer (dashboard/inputs.py)."""

    state: str | None = None
    actor: str | None = None
    queue: str | None = None
    dedup_key: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None

    @classmethod
    def from_params(cls, params: Any) -> JobFilter:
        """From query or form parameters (other keys are ignored), checked like the console's
        requests (dashboard/inputs.py); raises ValueError (validate.BadInput) naming the field."""
        from dashboard import inputs, validate

        known = [(k, v) for k, v in params.items() if k in inputs.JOB_FILTER]
        return inputs.job_filter(validate.fields(known, inputs.JOB_FILTER))

    def to_params(self) -> dict[str, str]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items() if v}

    def where(self) -> sql.Composed:
        """The SQL condition, every value a parameter (named after the field)."""
        parts = [sql.SQL("true")]
        for column in ("state", "actor", "queue", "dedup_key"):
            if getattr(self, column):
                parts.append(sql.SQL("{} = {}").format(sql.Identifier(column), sql.Placeholder(column)))
        if self.since:
            parts.append(sql.SQL("enqueued_at >= %(since)s"))
        if self.until:
            parts.append(sql.SQL("enqueued_at < %(until)s"))
        if self.text:
            if text_as_id(self.text) is not None:
                parts.append(sql.SQL("id = %(text_id)s"))
            else:
                parts.append(sql.SQL("(args::text || ' ' || kwargs::text) ILIKE %(text_like)s"))
        return sql.SQL(" AND ").join(parts)

    def params(self) -> dict[str, Any]:
        p: dict[str, Any] = asdict(self)
        if self.text:
            p["text_id"] = text_as_id(self.text)
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            p["text_like"] = f"%{escaped}%"
        return p


def text_as_id(text: str) -> int | None:
    """A job id when `text` is one (ASCII digits within bigint; `str.isdigit()` also takes '²')."""
    if _ID_TEXT.match(text) and int(text) <= MAX_BIGINT:
        return int(text)
    return None


def jobs_page(
    conn: psycopg.Connection, flt: JobFilter, before_id: int | None = None, limit: int = DEFAULT_PAGE_SIZE
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of jobs and the `before_id` of the next page (None on the last page)."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    query = sql.SQL(ledger_reads_sql.JOB_LIST_PAGE).format(where=flt.where())
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(query, {**flt.params(), "before_id": before_id, "limit": limit + 1}).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["id"] if more and rows else None)


def job_ids_matching(conn: psycopg.Connection, flt: JobFilter, limit: int = MAX_BULK) -> list[int]:
    query = sql.SQL(ledger_reads_sql.JOB_IDS_MATCHING).format(where=flt.where())
    return [r[0] for r in conn.execute(query, {**flt.params(), "limit": limit}).fetchall()]


def dead_recently(conn: psycopg.Connection, span: timedelta) -> int:
    return conn.execute(ledger_reads_sql.JOB_DEAD_RECENTLY, {"span": span}).fetchone()[0]


def workers(conn: psycopg.Connection, dead_after_s: float) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(ledger_reads_sql.WORKER_LIST, {"dead_after_s": dead_after_s}).fetchall()


def queue_depths(redis_url: str, namespace: str, queues: list[str]) -> list[dict[str, Any]]:
    """Per queue: messages waiting in the Redis broker and the age of the oldest (Dramatiq keeps a
    queue as the list `<ns>:<queue>` of message ids, oldest first, and the hash `<ns>:<queue>.msgs`)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        now_ms = None
        result = []
        for queue in sorted(queues):
            key = f"{namespace}:{queue}"
            with client.pipeline(transaction=False) as pipe:  # one list per priority (workers/relay.py)
                for priority in PRIORITIES:
                    pipe.llen(priority_list(namespace, queue, priority))
                depth = sum(pipe.execute())
            oldest_age_s = None
            if depth:
                first = client.lindex(key, 0)
                raw = client.hget(f"{key}.msgs", first) if first else None
                if raw:
                    if now_ms is None:
                        seconds, micros = client.time()
                        now_ms = seconds * 1000 + micros // 1000
                    try:
                        oldest_age_s = max(now_ms - json.loads(raw)["message_timestamp"], 0) / 1000
                    except (ValueError, KeyError, TypeError):
                        oldest_age_s = None
            result.append({"queue": queue, "depth": depth, "oldest_age_s": oldest_age_s})
        return result
    finally:
        client.close()


# How the audit log names who acted: a console user `ops:<user>`, a command-line user `cli:<login>`;
# anything else (`job:<actor>`, the app's own rows) is the system.
OPS_PREFIX = "ops:"
PEOPLE_PREFIXES = (OPS_PREFIX, "cli:")
# The audit log's views: people's actions, the system's, or both.
AUDIT_KINDS = ("ops", "system", "all")


def ip_or_none(ip: str | None) -> str | None:
    """The address as PostgreSQL's inet takes it, or None (a unix socket, the test client's name)."""
    try:
        return str(ipaddress.ip_address(ip)) if ip else None
    except ValueError:
        return None


# -- dashboard_audit_write -- one ops action. `action` keeps the seed's CHECK (INSERT/UPDATE/DELETE);
# the ops verb is in `reason` and `new_values.verb`.
AUDIT_WRITE = """
INSERT INTO audit_log (table_name, record_id, action, performed_by, ip_address, new_values, reason)
VALUES (%(table_name)s, %(record_id)s, %(action)s, %(user)s, %(ip)s::inet, %(details)s, %(verb)s)
"""


def audit_write(
    conn: psycopg.Connection,
    *,
    user: str,
    verb: str,
    table_name: str,
    record_id: str,
    details: dict[str, Any],
    ip: str | None = None,
    action: str = "UPDATE",
) -> None:
    conn.execute(
        AUDIT_WRITE,
        {
            "table_name": table_name,
            "record_id": record_id[:100],
            "action": action,
            "user": user,
            "ip": ip_or_none(ip),
            "details": psycopg.types.json.Jsonb({"verb": verb, **details}),
            "verb": verb,
        },
    )


# -- dashboard_audit_list -- newest first: people's actions by audit_log_people_idx (0012), the
# system's and all by idx_audit_created; one record's entries by idx_audit_table_record.
AUDIT_LIST = """
SELECT audit_id, created_at, performed_by, reason AS verb, table_name, record_id, action,
       new_values, host(ip_address) AS ip
  FROM audit_log
 WHERE ({kind})
   AND (%(table_name)s::text IS NULL OR (table_name = %(table_name)s AND record_id = %(record_id)s))
   AND (%(before_id)s::bigint IS NULL OR audit_id < %(before_id)s)
 ORDER BY created_at DESC, audit_id DESC
 LIMIT %(limit)s
"""
# The `kind` conditions (the people's one is audit_log_people_idx's predicate, word for word).
AUDIT_PEOPLE = "performed_by LIKE 'ops:%%' OR performed_by LIKE 'cli:%%'"
AUDIT_KIND_WHERE = {
    "ops": AUDIT_PEOPLE,
    "system": "performed_by IS NULL OR NOT (performed_by LIKE 'ops:%%' OR performed_by LIKE 'cli:%%')",
    "all": "true",
}


def audit_list(
    conn: psycopg.Connection,
    *,
    kind: str = "all",
    table_name: str | None = None,
    record_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[dict[str, Any]]:
    query = sql.SQL(AUDIT_LIST).format(kind=sql.SQL(AUDIT_KIND_WHERE[kind]))
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            query,
            {"table_name": table_name, "record_id": record_id, "limit": limit, "before_id": before_id},
        ).fetchall()
