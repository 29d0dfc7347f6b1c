"""Bare Dramatiq for the peers bench: bench/throughput/bare_app.py's broker (same namespace handling, same
idle poll), plus an actor that does the peers' write on a connection of its worker thread.

    BENCH_BARE_NAMESPACE=... BENCH_PEER_DATABASE_URL=... python -m dramatiq bench.peers.bare_actors:broker
"""

from __future__ import annotations

import dramatiq

from bench.peers.write import write_sync
from bench.throughput.bare_app import broker

__all__ = ["bench_write", "broker"]


@dramatiq.actor(broker=broker, queue_name="default")
def bench_write(n: int) -> None:
    """One row into bench_writes."""
    write_sync(n)
