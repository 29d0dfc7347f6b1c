"""The module a worker loads (`dramatiq workers.app:broker`): the broker and every actor.

`SKYPORT_EXTRA_MODULES` (comma-separated module names) adds more, e.g. an app's own job modules.
"""

from __future__ import annotations

import importlib
import os

from workers.broker import broker

# Every module that declares actors; a job family adds its line here.
JOB_MODULES = (
    "workers.ping",
    "workers.maintenance",
    "jobs.notifications.actors",
    "jobs.quotes.actors",
    "jobs.partitions.actors",
    "jobs.matviews.actors",
    "jobs.payments.actors",
)

for _module in JOB_MODULES + tuple(
    filter(None, (m.strip() for m in os.environ.get("SKYPORT_EXTRA_MODULES", "").split(",")))
):
    importlib.import_module(_module)

__all__ = ["JOB_MODULES", "broker"]
