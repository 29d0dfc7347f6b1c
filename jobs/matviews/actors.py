"""The refresh actors: scheduled (each view on its own entry in jobs/matviews/family.py) and on
demand (`request_refresh`, debounced)."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

from dramatiq.middleware import CurrentMessage

from db import pool
from jobs.maintenance_file import MaintenanceConfigError
from jobs.matviews.refresh import UnknownView, refresh_view
from jobs.matviews.registry import get_view
from workers import JobRef, PermanentError, actor, enqueue

logger = logging.getLogger("skyport.matviews")


class RefreshBusy(Exception):
    """A refresh of the view was already running when a requested one was due: tried again, so
    the refresh that answers the request starts after it."""


def _job_id() -> int | None:
    message = CurrentMessage.get_current_message()
    job_id = message.options.get("job_id") if message is not None else None
    return int(job_id) if job_id is not None else None


def _refresh(view: str) -> str:
    try:
        with pool.connection() as conn:
            return refresh_view(conn, view, job_id=_job_id()).outcome
    except (UnknownView, MaintenanceConfigError) as exc:
        raise PermanentError(str(exc)) from None


# Priority 6 (0 first, 9 last): a scheduled refresh can wait behind the maintenance queue's other work.
@actor(queue_name="maintenance", max_retries=1, min_backoff_s=30.0, time_limit=60 * 60_000, priority=6)
def refresh_matview(view: str) -> None:
    """Scheduled refresh; skipped when one of the same view is running already."""
    _refresh(view)


@actor(
    queue_name="maintenance",
    max_retries=20,
    min_backoff_s=2.0,
    max_backoff_s=60.0,
    time_limit=60 * 60_000,
    priority=4,  # someone asked for it: ahead of the scheduled refreshes
)
def refresh_matview_requested(view: str) -> None:
    """Refresh on demand (see request_refresh); waits its turn behind a running refresh."""
    if _refresh(view) == "skipped":
        raise RefreshBusy(f"matview {view}: a refresh is running; this request refreshes after it")


def request_refresh(view: str, *, conn: Any = None, now: datetime | None = None) -> JobRef:
    """Ask for a refresh of `view` soon. Requests within one debounce window of the view collapse
    into one job that runs at the window's end (dedup key per window), so the refresh always starts
    after the request. `conn`: enqueue in the caller's transaction."""
    found = get_view(view)
    if found is None:
        raise UnknownView(f"matview {view!r} is not in the registry (jobs/matviews/registry.py)")
    now = now or datetime.now(UTC)
    window_end = math.floor(now.timestamp() / found.debounce_s + 1) * found.debounce_s
    eta = datetime.fromtimestamp(window_end, UTC)
    return enqueue(
        refresh_matview_requested,
        [view],
        dedup_key=f"matview:{view}:{eta.isoformat()}",
        eta=eta,
        conn=conn,
        enqueued_by="matviews:request",
    )
