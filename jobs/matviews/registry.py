"""The registry of materialized views: how often each is refreshed, how long a refresh may run,
how requests on demand are debounced. Defaults here; `SKYPORT_MAINTENANCE_FILE`
(`[matviews.<view>]`) changes an entry or adds a view without a code change.

A view added in the file also needs its periodic run: a `SKYPORT_SCHEDULE_FILE` entry
`[refresh_<view>]` with actor = "refresh_matview", args = ["<view>"], trigger = "every <interval>".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import config
from jobs.maintenance_file import MaintenanceConfigError, check_keys, read_section

# A refresh running longer than this is cancelled (statement_timeout) unless the view says otherwise.
DEFAULT_STATEMENT_TIMEOUT_S = 600.0
# Requests on demand within this many seconds collapse into one refresh, unless the view says otherwise.
DEFAULT_DEBOUNCE_S = 10.0
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_$]{0,62}$")


@dataclass(frozen=True)
class MaterializedView:
    name: str
    # Seconds between two scheduled refreshes (the view is stale after twice this).
    interval_s: float
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S
    debounce_s: float = DEFAULT_DEBOUNCE_S
    enabled: bool = True


# The registry (the schedule's refresh_<view> entries use the same intervals).
DEFAULT_VIEWS: tuple[MaterializedView, ...] = (
    MaterializedView("active_countries", interval_s=5 * 60),
    MaterializedView("shipment_statistics", interval_s=15 * 60),
)

_FIELDS = {"interval_s", "statement_timeout_s", "debounce_s", "enabled"}


def load_views(
    path: str | None = None, base: tuple[MaterializedView, ...] = DEFAULT_VIEWS
) -> list[MaterializedView]:
    """The registry with the maintenance file's changes (default: SKYPORT_MAINTENANCE_FILE)."""
    path = config.get().maintenance.file if path is None else path
    entries = {v.name: v for v in base}
    for name, changes in read_section(path, "matviews").items():
        check_keys("matviews", name, changes, _FIELDS, path or "")
        where = f"matviews entry {name!r} in {path}"
        view = entries.get(name)
        if view is None:
            if "interval_s" not in changes:
                raise MaintenanceConfigError(f"{where}: a new view needs interval_s")
            view = MaterializedView(name, interval_s=float(changes["interval_s"]))
        values: dict[str, Any] = {}
        for field_name, value in changes.items():
            if field_name == "enabled":
                if not isinstance(value, bool):
                    raise MaintenanceConfigError(f"{where}: enabled must be true or false, got {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise MaintenanceConfigError(
                    f"{where}: {field_name} must be a positive number, got {value!r}"
                )
            else:
                value = float(value)
            values[field_name] = value
        entries[name] = replace(view, **values)
    views = list(entries.values())
    for view in views:
        if not _IDENTIFIER.match(view.name):
            raise MaintenanceConfigError(f"matviews entry {view.name!r}: not a plain lower-case identifier")
    return views


def get_view(name: str, views: list[MaterializedView] | None = None) -> MaterializedView | None:
    return next((v for v in (load_views() if views is None else views) if v.name == name), None)
