"""Every job family, in one list: the worker, the scheduler, the console and the command line read it.

Importing this module declares every actor on the broker: the runtime's own (`ping`, the ledger's
maintenance), each family's, and the modules named in SKYPORT_EXTRA_MODULES (an app's own actor
modules). A worker loads it through `skyport.app:broker`. A new family adds its `FAMILY` here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import config
from jobs.family import ConsoleAction, ConsoleRead, Family, Periodic
from jobs.matviews.family import FAMILY as MATVIEWS
from jobs.notifications.family import FAMILY as NOTIFICATIONS
from jobs.partitions.family import FAMILY as PARTITIONS
from jobs.payments.family import FAMILY as PAYMENTS
from jobs.quotes.family import FAMILY as QUOTES
from workers import maintenance, ping
from workers.broker import broker

# The runtime's own actors: the pipeline's smoke test and the ledger's upkeep.
LEDGER = Family(
    name="ledger",
    actors=(ping, maintenance),
    schedule=(
        Periodic("ledger_lifeline", "ledger_lifeline", "every 30s", grace_s=30),
        Periodic("prune_jobs", "prune_jobs", "15 3 * * *"),
        # The console's rollup (workers/stats.py): charts and counts without scanning the ledger.
        Periodic("ledger_stats", "ledger_stats", "every 1m", grace_s=60),
    ),
)

FAMILIES: tuple[Family, ...] = (LEDGER, NOTIFICATIONS, QUOTES, PARTITIONS, MATVIEWS, PAYMENTS)


def _import_extra_modules() -> None:
    # The app's own modules, named by configuration: the one place a module is imported by name.
    for name in config.get().worker.extra_modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise config.ConfigError(f"SKYPORT_EXTRA_MODULES: cannot import {name!r}: {exc}") from None


def schedule() -> Iterator[Periodic]:
    for family in FAMILIES:
        yield from family.schedule


def console_reads() -> Iterator[ConsoleRead]:
    for family in FAMILIES:
        yield from family.reads


def console_action(name: str) -> ConsoleAction | None:
    return next((f.actions[name] for f in FAMILIES if name in f.actions), None)


_import_extra_modules()

__all__ = ["FAMILIES", "broker", "console_action", "console_reads", "schedule"]
