"""The module a worker loads (`dramatiq workers.app:broker`): the broker and every actor.

Job families register here; `SKYPORT_EXTRA_MODULES` (comma-separated module names) adds more,
e.g. an app's own job modules.
"""

from __future__ import annotations

import importlib
import os

from workers import maintenance, ping  # noqa: F401  (registers the actors)
from workers.broker import broker

for _module in filter(None, (m.strip() for m in os.environ.get("SKYPORT_EXTRA_MODULES", "").split(","))):
    importlib.import_module(_module)

__all__ = ["broker"]
