"""No job runs before Dramatiq's main process has heard that its worker process booted.

Dramatiq's worker process starts its consumer and worker threads, then reports "booted" to the
main process through a multiprocessing Event. If a job runs at once and kills its process (a
segfault, an OOM kill, os.kill) while that process is inside `Event.set()`, the Event's lock dies
held, and the main process blocks on it forever: it never notices the dead worker, so nothing
restarts it. (Seen here: a job waiting in the queue when a worker started did this about one boot
in two.) `skyport worker` therefore runs Dramatiq's worker process through `worker_process` below,
which opens a gate once the report is made, and the ledger middleware holds every job at the gate.
"""

from __future__ import annotations

import threading
from typing import Any

from dramatiq import cli as dramatiq_cli

_dramatiq_worker_process = dramatiq_cli.worker_process
# Set in a worker process started through `worker_process`; None elsewhere (no gate to wait at).
_reported: threading.Event | None = None


class _ReportingEvent:
    """Dramatiq's boot Event; once its set() has returned, the gate opens."""

    def __init__(self, event: Any, reported: threading.Event) -> None:
        self._event = event
        self._reported = reported

    def set(self) -> None:
        self._event.set()
        self._reported.set()


def worker_process(args: Any, worker_id: int, logging_pipe: Any, canteen: Any, event: Any) -> Any:
    """Dramatiq's `worker_process`, with the gate (runs in the worker process)."""
    global _reported
    _reported = threading.Event()
    return _dramatiq_worker_process(args, worker_id, logging_pipe, canteen, _ReportingEvent(event, _reported))


def install() -> None:
    """Make Dramatiq's main() start its worker processes through `worker_process`."""
    dramatiq_cli.worker_process = worker_process


def wait_until_reported() -> None:
    if _reported is not None:
        _reported.wait()
