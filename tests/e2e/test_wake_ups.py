"""An idle `skyport worker` waits for wake-ups (workers/wake.py): it leaves Redis alone, and a job
sent to it starts at once, long before its next poll. On a Redis of the test's own, so that its
command counts are the worker's."""

from __future__ import annotations

import time

import pytest
import redis

import config
from tests.support import PrivateRedis, WorkerProcess, scalar, wait_for
from workers import enqueue, wake

pytestmark = pytest.mark.slow


def _lua_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("eval", "evalsha"))


@pytest.mark.one_route
@pytest.mark.timeout(90)
def test_an_idle_worker_leaves_redis_alone_and_starts_a_sent_job_at_once(
    effects: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with PrivateRedis() as server:
        monkeypatch.setenv("BROKER_URL", server.url)  # where this process's enqueue sends
        config.get.cache_clear()
        client = redis.Redis.from_url(server.url)
        env = {"BROKER_URL": server.url, "SKYPORT_WORKER_IDLE_POLL_S": "30"}
        with WorkerProcess(processes=1, threads=2, env=env) as worker:
            worker.wait_ready(effects)
            channel = wake.channel(config.get().broker.namespace)
            wait_for(lambda: client.pubsub_numsub(channel)[0][1] == 1, 10, what="the worker to subscribe")
            time.sleep(1)  # the consumers' first fetches, once subscribed
            before = _lua_calls(client)
            time.sleep(3)
            # Polling every 50-100 ms, each consumer (one per queue) would have fetched 30-60 times.
            assert _lua_calls(client) - before <= 2
            job = enqueue("remember", ["woken"])
            wait_for(
                lambda: scalar(effects, "SELECT state FROM jobs WHERE id = %s", (job.id,)) == "succeeded",
                5,  # its consumer's next poll is 30 s away: only the wake-up starts it this soon
                what=f"the job to succeed\n{worker.output()}",
            )
            stopping = time.monotonic()
            assert worker.stop() == 0
            # A consumer still waiting for a wake-up would hold the shutdown up to 30 s.
            assert time.monotonic() - stopping < 15, worker.output()
        client.close()
    assert scalar(effects, "SELECT count(*) FROM effects WHERE key = 'woken'") == 1
