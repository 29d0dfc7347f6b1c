"""The ledger path's no-op actor of the throughput bench (loaded with SKYPORT_EXTRA_MODULES)."""

from __future__ import annotations

from workers import actor


@actor(queue_name="default")
def bench_noop() -> None:
    """Does nothing: the bench measures the path around the actor."""
