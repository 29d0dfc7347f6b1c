"""Materialized-view refreshes: a registry of views with their intervals (registry.py), the
single-flight, recorded refresh (refresh.py), staleness for ops (status.py), the scheduled and
on-demand actors (actors.py: `request_refresh` debounces), `skyport matviews` (cli.py).

For the dashboard: `staleness(conn) -> list[ViewStatus]`.
"""

from jobs.matviews.refresh import RefreshResult, UnknownView, refresh_view
from jobs.matviews.registry import MaterializedView, load_views
from jobs.matviews.status import ViewStatus, staleness

__all__ = [
    "MaterializedView",
    "RefreshResult",
    "UnknownView",
    "ViewStatus",
    "load_views",
    "refresh_view",
    "staleness",
]
