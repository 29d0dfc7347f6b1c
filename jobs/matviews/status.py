"""Per registered view: its last successful refresh and how stale it is (dashboard, CLI)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg

from jobs.matviews.registry import MaterializedView, load_views

# A view is stale when its last successful refresh started more than this many intervals ago.
DEFAULT_STALE_AFTER_INTERVALS = 2.0


@dataclass(frozen=True)
class ViewStatus:
    view: str
    interval_s: float
    # When the last successful refresh started (its data is as of then) and finished.
    last_success_at: datetime | None
    last_success_finished_at: datetime | None
    last_duration_s: float | None
    rows: int | None
    # Seconds since last_success_at (None: never refreshed successfully).
    staleness_s: float | None
    stale: bool
    # The newest refresh that was not skipped: its outcome and error.
    last_outcome: str | None
    last_error: str | None
    running: bool

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


# -- matview_status -- the last success and the last attempt per view
# (matview_refreshes_view_succeeded_idx, matview_refreshes_view_started_idx).
MATVIEW_STATUS = """
SELECT v.name, s.started_at, s.finished_at, s.duration_s, s.rows,
       extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - s.started_at),
       l.outcome, l.error
  FROM unnest(%(views)s::text[]) AS v(name)
  LEFT JOIN LATERAL (SELECT started_at, finished_at, duration_s, rows FROM matview_refreshes
                      WHERE view_name = v.name AND outcome = 'succeeded'
                      ORDER BY started_at DESC LIMIT 1) s ON true
  LEFT JOIN LATERAL (SELECT outcome, error FROM matview_refreshes
                      WHERE view_name = v.name AND outcome <> 'skipped'
                      ORDER BY started_at DESC LIMIT 1) l ON true
"""


def staleness(
    conn: psycopg.Connection, views: list[MaterializedView] | None = None, now: datetime | None = None
) -> list[ViewStatus]:
    """One ViewStatus per enabled registered view (`now`: a pinned clock; default the database's)."""
    views = [v for v in (load_views() if views is None else views) if v.enabled]
    rows = conn.execute(MATVIEW_STATUS, {"now": now, "views": [v.name for v in views]}).fetchall()
    by_name = {row[0]: row for row in rows}
    result = []
    for view in views:
        _, started, finished, duration_s, count, age_s, outcome, error = by_name[view.name]
        age = float(age_s) if age_s is not None else None
        result.append(
            ViewStatus(
                view=view.name,
                interval_s=view.interval_s,
                last_success_at=started,
                last_success_finished_at=finished,
                last_duration_s=duration_s,
                rows=count,
                staleness_s=age,
                stale=age is None or age > DEFAULT_STALE_AFTER_INTERVALS * view.interval_s,
                last_outcome=outcome,
                last_error=error,
                running=outcome == "running",
            )
        )
    return result
