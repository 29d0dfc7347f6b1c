"""Redis memory per queued message: N jobs enqueued with no worker running, then the queue's keys.

A message waiting in Redis lives twice: its id in the queue's list (`<ns>:<queue>`) and its body in
the queue's hash (`<ns>:<queue>.msgs`, until acknowledged). `MEMORY USAGE ... SAMPLES 0` of both
keys is exact for the bench's own keys; `used_memory` (INFO) is server-wide, so on a shared Redis
its difference also counts what others wrote meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from bench.capacity.ledger import Ledger

QUEUE = "default"


@dataclass
class RedisFigures:
    kind: str
    messages: int
    body_bytes: float  # the encoded message (the hash's value), mean
    key_bytes: float  # MEMORY USAGE of the list and the hash, per message
    used_memory_bytes: float  # INFO used_memory after - before, per message (server-wide)


def queue_keys(namespace: str) -> tuple[str, str]:
    return f"{namespace}:{QUEUE}", f"{namespace}:{QUEUE}.msgs"


def measure(
    ledger: Ledger, client: redis.Redis, namespace: str, kind: str, jobs: int, batch: int
) -> RedisFigures:
    """Enqueue `jobs` jobs (no worker running), read the memory, then remove them again."""
    queue, msgs = queue_keys(namespace)
    before = client.info("memory")["used_memory"]
    ledger.send(kind, "batch", jobs, batch)
    after = client.info("memory")["used_memory"]
    waiting = client.llen(queue)
    if waiting != jobs:
        raise RuntimeError(f"{waiting} messages in {queue}, expected {jobs}")
    key_bytes = sum(client.memory_usage(key, samples=0) or 0 for key in (queue, msgs))
    bodies = [len(v) for v in client.hvals(msgs)]
    client.delete(queue, msgs)
    ledger.reset()
    return RedisFigures(kind, jobs, sum(bodies) / len(bodies), key_bytes / jobs, (after - before) / jobs)
