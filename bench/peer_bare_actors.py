"""Bare Dramatiq for bench/peers.py: bench/bare_app.py's broker (same namespace handling, same
idle poll), plus an actor that does the peers' write on a connection of its worker thread.

    BENCH_BARE_NAMESPACE=... BENCH_PEER_DATABASE_URL=... python -m dramatiq bench.peer_bare_actors:broker
"""

from __future__ import annotations

import dramatiq

from bench.bare_app import broker
from bench.peer_write import write_sync

__all__ = ["bench_write", "broker"]


@dramatiq.actor(broker=broker, queue_name="default")
def bench_write(n: int) -> None:
    """One row into bench_writes."""
    write_sync(n)
