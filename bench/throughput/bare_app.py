"""Bare Dramatiq for the throughput bench: a RedisBroker with Dramatiq's default middleware, in a
namespace of the bench's own (BENCH_BARE_NAMESPACE), and the same no-op actor as the ledger path.

    BENCH_BARE_NAMESPACE=... python -m dramatiq bench.throughput.bare_app:broker -p 2 -t 8

One setting differs from Dramatiq's default, in its favour: an idle consumer polls Redis every
100 ms, not every second (Skyport's consumers poll at that pace while they cannot hear wake-ups).
The consumer thread also sends the acks, so with the default the last acks of a run wait up to a
second, and the bare path would look slower than it is.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import Middleware

# workers.middleware.DEFAULT_IDLE_POLL_MS (not imported: the bare workers load nothing of Skyport).
IDLE_POLL_MS = 100


class IdlePoll(Middleware):
    """The idle poll interval of Skyport's LedgerMiddleware, and nothing else of it."""

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        worker.worker_timeout = IDLE_POLL_MS


broker = RedisBroker(
    url=os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"),
    namespace=os.environ["BENCH_BARE_NAMESPACE"],
)
broker.add_middleware(IdlePoll())
dramatiq.set_broker(broker)


@dramatiq.actor(broker=broker, queue_name="default")
def bench_noop() -> None:
    """Does nothing: the bench measures the path around the actor."""
