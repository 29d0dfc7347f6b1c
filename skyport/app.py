"""The application: the broker with every actor declared, and the API apps enqueue with.

    from skyport.app import enqueue, enqueue_many, JobSpec

Importing this module declares every job family's actors (jobs/registry.py) and the modules
named in SKYPORT_EXTRA_MODULES, so any of them can be enqueued by name. A worker process loads
it as `skyport.app:broker`.
"""

from jobs.registry import broker
from workers import EnqueueError, JobRef, JobSpec, PermanentError, actor, enqueue, enqueue_async, enqueue_many

__all__ = [
    "EnqueueError",
    "JobRef",
    "JobSpec",
    "PermanentError",
    "actor",
    "broker",
    "enqueue",
    "enqueue_async",
    "enqueue_many",
]
