"""The job runtime: enqueue API, ledger, relay, consumer, lifeline, middleware.

Job modules declare actors with `workers.actor`. `enqueue` / `enqueue_many` know the actors
declared in this process: apps import them from `skyport.app`, which declares every actor.
"""

from __future__ import annotations

from typing import Any

from workers.enqueue import EnqueueError, JobRef, JobSpec, enqueue, enqueue_async, enqueue_many
from workers.retry_policy import PermanentError

__all__ = [
    "EnqueueError",
    "JobRef",
    "JobSpec",
    "PermanentError",
    "actor",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
]


def actor(fn: Any = None, **options: Any) -> Any:
    """`dramatiq.actor` on Skyport's broker. Options: queue_name, max_retries, min_backoff_s,
    max_backoff_s, retry_when, throws, time_limit (ms), priority (0 first .. 9 last), and flow
    control's concurrency, concurrency_key and rate_limit (docs/flow-control.md). A malformed
    flow option fails the declaration (FlowError), not the actor's jobs."""
    import dramatiq

    from workers import flow
    from workers.broker import broker

    if fn is None:
        return lambda f: actor(f, **options)
    declared = dramatiq.actor(fn, broker=broker, **options)
    flow.actor_flow(declared)
    return declared
