"""Refresh a materialized view: CONCURRENTLY when PostgreSQL allows it (readers never wait), single
flight per view, bounded by statement_timeout, every refresh recorded in `matview_refreshes`.

Takes an autocommit connection: the history rows are written outside the refresh's transaction,
so a refresh in progress is visible ('running') and a failed one still leaves its record. The
view's lock spans those transactions: it is held by a transaction of its own on another pooled
connection (db/locks.py), so it holds behind a transaction pooler too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from db import locks
from jobs.matviews.registry import MaterializedView, get_view

logger = logging.getLogger("skyport.matviews")

# First key of the two-int advisory lock held while a view refreshes (the second: hashtext(view)).
ADVISORY_LOCK_CLASS = 0x5B0B  # "skyport matviews"
# A refresh waits at most this long for the view's lock (a plain refresh queued behind a long
# reader would block every new reader meanwhile).
DEFAULT_LOCK_TIMEOUT_S = 30.0
# History rows older than this are deleted after each refresh of the view.
DEFAULT_KEEP_HISTORY_DAYS = 30


class UnknownView(Exception):
    """The view is not in the registry or not a materialized view in the database."""


@dataclass(frozen=True)
class RefreshResult:
    view: str
    # "succeeded", "skipped" (a refresh of the view was already running) or "failed".
    outcome: str
    mode: str | None = None
    rows: int | None = None
    duration_s: float | None = None
    error: str | None = None
    refresh_id: int | None = None


# -- matview_inspect -- populated? a unique index on plain columns, valid, without WHERE (what
# REFRESH ... CONCURRENTLY requires)?
MATVIEW_INSPECT = """
SELECT c.relispopulated,
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisunique AND i.indisvalid
                  AND i.indpred IS NULL AND i.indexprs IS NULL)
  FROM pg_class c
 WHERE c.oid = to_regclass(%s) AND c.relkind = 'm'
"""

# -- matview_refresh_abandon -- we hold the view's lock, so a 'running' row is a dead worker's.
MATVIEW_REFRESH_ABANDON = """
UPDATE matview_refreshes
   SET outcome = 'abandoned', finished_at = now(), error = 'the refreshing process stopped before finishing'
 WHERE view_name = %s AND outcome = 'running'
"""

# -- matview_refresh_start -- (matview_refreshes_view_started_idx)
MATVIEW_REFRESH_START = """
INSERT INTO matview_refreshes (view_name, mode, outcome, job_id) VALUES (%s, %s, 'running', %s) RETURNING id
"""

# -- matview_refresh_finish -- only a row still running is finished.
MATVIEW_REFRESH_FINISH = """
UPDATE matview_refreshes
   SET outcome = %(outcome)s, finished_at = clock_timestamp(), duration_s = %(duration_s)s,
       rows = %(rows)s, error = %(error)s
 WHERE id = %(id)s AND outcome = 'running'
"""

# -- matview_refresh_skipped --
MATVIEW_REFRESH_SKIPPED = """
INSERT INTO matview_refreshes (view_name, outcome, finished_at, duration_s, error, job_id)
VALUES (%s, 'skipped', now(), 0, 'a refresh of this view was already running', %s)
"""

# -- matview_refresh_prune -- (matview_refreshes_view_started_idx)
MATVIEW_REFRESH_PRUNE = """
DELETE FROM matview_refreshes WHERE view_name = %s AND started_at < now() - make_interval(days => %s)
"""


@contextmanager
def view_lock(view: str) -> Iterator[bool]:
    """Single flight: one refresh per view at a time, across all workers; yields whether this
    process got the view's lock (held until the block ends; db/locks.py)."""
    with locks.try_lock(ADVISORY_LOCK_CLASS, view) as got:
        yield got


def refresh_mode(conn: psycopg.Connection, view: str) -> tuple[str, str]:
    """("concurrent" | "plain", why)."""
    row = conn.execute(MATVIEW_INSPECT, (view,)).fetchone()
    if row is None:
        raise UnknownView(f"matview {view!r}: no materialized view of that name in the database")
    populated, unique = row
    if not populated:
        return "plain", "the view is not populated yet (CONCURRENTLY needs a populated view)"
    if not unique:
        return "plain", "the view has no unique index on plain columns (CONCURRENTLY needs one)"
    return "concurrent", "populated, with a unique index"


def refresh_view(
    conn: psycopg.Connection,
    view: MaterializedView | str,
    *,
    job_id: int | None = None,
    force_mode: str | None = None,
) -> RefreshResult:
    """Refresh one registered view now, unless a refresh of it is already running (then:
    outcome "skipped"). A failed refresh is recorded, then its error is raised."""
    if isinstance(view, str):
        found = get_view(view)
        if found is None:
            raise UnknownView(f"matview {view!r} is not in the registry (jobs/matviews/registry.py)")
        view = found
    with view_lock(view.name) as got:
        if not got:
            conn.execute(MATVIEW_REFRESH_SKIPPED, (view.name, job_id))
            logger.info("matview %s: a refresh is already running, skipped", view.name)
            return RefreshResult(view.name, "skipped")
        conn.execute(MATVIEW_REFRESH_ABANDON, (view.name,))
        mode, why = refresh_mode(conn, view.name)
        if force_mode is not None:
            mode, why = force_mode, "forced by the caller"
        if mode == "plain":
            logger.warning("matview %s: plain refresh (readers wait while it runs): %s", view.name, why)
        refresh_id = conn.execute(MATVIEW_REFRESH_START, (view.name, mode, job_id)).fetchone()[0]
        started = time.monotonic()
        try:
            rows = _refresh(conn, view, mode)
        except Exception as exc:
            duration_s = time.monotonic() - started
            error = f"{type(exc).__name__}: {str(exc).strip()}"
            conn.execute(
                MATVIEW_REFRESH_FINISH,
                {
                    "outcome": "failed",
                    "duration_s": duration_s,
                    "rows": None,
                    "error": error,
                    "id": refresh_id,
                },
            )
            logger.error("matview %s: %s refresh failed after %.2fs: %s", view.name, mode, duration_s, error)
            raise
        duration_s = time.monotonic() - started
        conn.execute(
            MATVIEW_REFRESH_FINISH,
            {"outcome": "succeeded", "duration_s": duration_s, "rows": rows, "error": None, "id": refresh_id},
        )
        conn.execute(MATVIEW_REFRESH_PRUNE, (view.name, DEFAULT_KEEP_HISTORY_DAYS))
    logger.info("matview %s: %s refresh, %d rows in %.3fs", view.name, mode, rows, duration_s)
    return RefreshResult(view.name, "succeeded", mode, rows, duration_s, None, refresh_id)


def _refresh(conn: psycopg.Connection, view: MaterializedView, mode: str) -> int:
    name = sql.Identifier(view.name)
    statement = (
        "REFRESH MATERIALIZED VIEW CONCURRENTLY {}"
        if mode == "concurrent"
        else "REFRESH MATERIALIZED VIEW {}"
    )
    with conn.transaction():
        conn.execute(
            sql.SQL("SET LOCAL statement_timeout = {}").format(
                sql.Literal(f"{int(view.statement_timeout_s * 1000)}ms")
            )
        )
        conn.execute(
            sql.SQL("SET LOCAL lock_timeout = {}").format(
                sql.Literal(f"{int(DEFAULT_LOCK_TIMEOUT_S * 1000)}ms")
            )
        )
        conn.execute(sql.SQL(statement).format(name))
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(name)).fetchone()[0]
