"""The flow bench's actors (loaded by its workers with SKYPORT_EXTRA_MODULES)."""

from __future__ import annotations

from workers import actor

# A concurrency limit far above what the workers can run at once: it never binds, so the bench
# measures what checking it costs.
UNBINDING_CONCURRENCY = 100_000


@actor(queue_name="bench_flow")
def flow_noop() -> None:
    """Does nothing, with no limit."""


@actor(queue_name="bench_flow", concurrency=UNBINDING_CONCURRENCY)
def flow_noop_limited() -> None:
    """Does nothing, under a concurrency limit that never binds."""


@actor(queue_name="bench_flow", rate_limit="20/s")
def flow_noop_rated() -> None:
    """Does nothing, at most 20 starts a second."""
