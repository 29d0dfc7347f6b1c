"""The maintenance configuration file (`SKYPORT_MAINTENANCE_FILE`): one TOML file with a table per
partitioned table and per materialized view, read by both registries.

    [partitions.shipments]            # a table the code does not know: key is required
    key = "created_at"
    interval = "year"
    premake = 2

    [partitions.shipment_tracking_events]
    retention = 36                    # intervals kept; 0 or "none": keep forever
    archive = true                    # retention only detaches

    [matviews.shipment_statistics]
    interval_s = 600
    statement_timeout_s = 120
"""

from __future__ import annotations

import tomllib
from typing import Any


class MaintenanceConfigError(ValueError):
    """The maintenance configuration is invalid; the message names the file and the entry."""


def read_section(path: str | None, section: str) -> dict[str, dict[str, Any]]:
    """The `[section.<name>]` tables of the file (empty without a file)."""
    if not path:
        return {}
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise MaintenanceConfigError(
            f"SKYPORT_MAINTENANCE_FILE: cannot read {path}: {exc.strerror}"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise MaintenanceConfigError(f"SKYPORT_MAINTENANCE_FILE: {path} is not valid TOML: {exc}") from None
    unknown = set(data) - {"partitions", "matviews"}
    if unknown:
        raise MaintenanceConfigError(f"{path}: unknown sections {sorted(unknown)} (partitions, matviews)")
    tables = data.get(section, {})
    if not isinstance(tables, dict):
        raise MaintenanceConfigError(f"{path}: [{section}] must hold tables [{section}.<name>]")
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise MaintenanceConfigError(
                f"{section} entry {name!r} in {path}: expected a table [{section}.{name}]"
            )
    return tables


def check_keys(section: str, name: str, entry: dict[str, Any], allowed: set[str], path: str) -> None:
    unknown = set(entry) - allowed
    if unknown:
        raise MaintenanceConfigError(
            f"{section} entry {name!r} in {path}: unknown keys {sorted(unknown)} (allowed: {sorted(allowed)})"
        )
