"""What a job family declares, in one place (its `family.py`), for everything above the families.

Importing a family's `family.py` imports its `actors` (declaring them); the scheduler runs its
`schedule` and `startup`, the console shows its `reads` and offers its `actions`, /metrics adds
its `metrics`, the command line adds its `commands`. Nothing above the families looks a family's
module up by name: they read `jobs.registry.FAMILIES`."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import psycopg


class CommandFailed(Exception):
    """A family's command could not do what was asked; the command line prints the message, exit 1."""


class StartupError(Exception):
    """A start-up hook found the family's configuration wrong: the scheduler does not start."""


@dataclass(frozen=True)
class Periodic:
    """A schedule entry the family ships (the scheduler's table is every family's entries)."""

    name: str
    actor: str
    trigger: str
    args: tuple[Any, ...] = ()
    # A tick later than this is skipped (None: the scheduler's default).
    grace_s: float | None = None


@dataclass(frozen=True)
class ConsoleRead:
    """A section of the console's family page and the overview's warnings.

    `read(conn)` returns the rows (dataclasses or dicts); `problems(rows)` gets them as plain
    dicts and returns one line per problem worth a warning on the overview.
    """

    section: str
    read: Callable[[psycopg.Connection], Any]
    problems: Callable[[Any], list[str]]


# An ops action offered by the console: (conn, by, ip, **parameters) -> result. `by` is who acts as
# the audit log names people (`ops:<console user>`, see `command_user` for the command line), `ip`
# their address (None when unknown). The family writes the audit rows it needs, with both.
ConsoleAction = Callable[..., Any]


@dataclass(frozen=True)
class Gauge:
    """A gauge for the web process's /metrics: `values` maps a label value (or None for a gauge
    without a label) to the current value. The web process turns it into Prometheus' format
    (the families import no metrics library: Dramatiq's must be set up before one loads)."""

    name: str
    help: str
    values: Mapping[str | None, float]
    label: str | None = None


@dataclass(frozen=True)
class Family:
    name: str
    # The modules whose import declares the family's actors.
    actors: tuple[ModuleType, ...]
    # Adds the family's `skyport ...` commands to the command line's subparsers.
    commands: Callable[[argparse._SubParsersAction], None] | None = None
    reads: tuple[ConsoleRead, ...] = ()
    actions: Mapping[str, ConsoleAction] = field(default_factory=dict)
    schedule: tuple[Periodic, ...] = ()
    # Gauges for the web process's /metrics, read at each scrape.
    metrics: Callable[[psycopg.Connection], Iterable[Gauge]] | None = None
    # Run by every scheduler process before its first tick (e.g. partitions exist ahead).
    startup: tuple[Callable[[], None], ...] = ()


def command_user() -> str:
    """Who ran a command, as the audit log and the ledger record it: `cli:<login name>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name in the environment or the password database
        return "cli:?"
