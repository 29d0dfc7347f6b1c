"""Wake-ups (workers/wake.py) on a real Redis: a send wakes the idle consumers of its queues, an
idle consumer waits for them instead of polling, and a lost subscription sends the consumers back
to polling until it is back."""

from __future__ import annotations

import threading
import uuid

import dramatiq
import redis
from dramatiq.broker import MessageProxy

from tests.conftest import TEST_REDIS_URL
from tests.support import PrivateRedis, wait_for
from workers import relay
from workers.consumer import ClaimingConsumer, ClaimingRedisBroker
from workers.wake import WakeUps


def _message(queue: str, n: int = 1) -> dramatiq.Message:
    return relay.job_message(n, "noop", queue, [n], {}, str(uuid.uuid4()))


def test_a_send_wakes_the_consumers_of_its_queues_only(redis_namespace: str) -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    wake_ups = WakeUps(redis_namespace)
    mine, other = wake_ups.event("mine"), wake_ups.event("other")
    wake_ups.start(client)
    try:
        wait_for(lambda: wake_ups.listening, 10, what="the subscription")
        wait_for(mine.is_set, 5, what="the wake-up of everyone once subscribed")
        mine.clear()
        other.clear()
        relay.send_to_redis(client, redis_namespace, [_message("mine")])
        wait_for(mine.is_set, 5, what="the wake-up of the queue sent to")
        assert not other.is_set()
    finally:
        wake_ups.stop()
    assert not wake_ups.listening
    assert other.is_set()  # a worker shutting down: no consumer keeps waiting


def test_an_idle_consumer_waits_for_a_wake_up_instead_of_polling(redis_namespace: str) -> None:
    wake_ups = WakeUps(redis_namespace, idle_poll_s=30)
    broker = ClaimingRedisBroker(
        claim=lambda messages: messages,
        release=lambda messages: None,
        url=TEST_REDIS_URL,
        namespace=redis_namespace,
        middleware=[],
        wake_ups=wake_ups,
    )
    fetches = []
    fetch_best = broker.fetch_best
    broker.fetch_best = lambda queue, count: fetches.append(count) or fetch_best(queue, count)  # type: ignore[method-assign]
    consumer = ClaimingConsumer(broker, "q", prefetch=4, timeout=100)
    got: list[MessageProxy] = []
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set() and not got:
            if (message := next(consumer)) is not None:
                got.append(message)

    wake_ups.start(broker.client)
    thread = threading.Thread(target=consume)
    try:
        wait_for(lambda: wake_ups.listening, 10, what="the subscription")
        thread.start()
        wait_for(lambda: fetches, 5, what="the first fetch")
        stop.wait(1.5)
        # Polling, as without wake-ups, would have fetched every 50-100 ms: 15-30 times.
        assert len(fetches) <= 2, fetches
        relay.send_to_redis(broker.client, redis_namespace, [_message("q", 7)])
        wait_for(lambda: got, 5, what="the woken consumer to fetch the message")
        assert got[0].args == (7,)
    finally:
        stop.set()
        wake_ups.stop()  # wakes the consumer if it still waits
        thread.join(10)
        consumer.close()
    assert not thread.is_alive()


def test_a_lost_subscription_sends_the_consumers_back_to_polling_until_it_is_back() -> None:
    with PrivateRedis() as server:
        client = redis.Redis.from_url(server.url, socket_timeout=5)
        wake_ups = WakeUps("wake-test")
        event = wake_ups.event("q")
        wake_ups.start(client)
        try:
            wait_for(lambda: wake_ups.listening, 10, what="the subscription")
            event.clear()
            server.stop()
            wait_for(lambda: not wake_ups.listening, 20, what="the lost subscription to show")
            assert event.is_set()  # the waiting consumers poll again at once
            server.start()  # same port
            wait_for(lambda: wake_ups.listening, 20, what="the subscription to come back")
            event.clear()
            relay.send_to_redis(client, "wake-test", [_message("q")])
            wait_for(event.is_set, 5, what="a wake-up after the restart")
        finally:
            wake_ups.stop()
            client.close()
