"""Wake-ups (workers/wake.py) on a real Redis: a send wakes the idle consumers of its queues, an
idle consumer waits for them instead of polling, and a lost subscription sends the consumers back
to polling until it is back."""

from __future__ import annotations

import threading
import time
import uuid

import dramatiq
import redis
from dramatiq.broker import MessageProxy

from tests.conftest import TEST_REDIS_URL
from tests.support import PrivateRedis, wait_for
from workers import relay, wake
from workers.consumer import ClaimingConsumer, ClaimingRedisBroker
from workers.wake import WakeUps


def _message(queue: str, n: int = 1, priority: int = 0) -> dramatiq.Message:
    return relay.job_message(n, "noop", queue, [n], {}, str(uuid.uuid4()), priority=priority)


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


def _consumer(redis_namespace: str, wake_ups: WakeUps) -> tuple[ClaimingConsumer, list[int]]:
    """A claiming consumer of queue "q" that runs every message, and the counts of its fetches."""
    broker = ClaimingRedisBroker(
        claim=lambda messages: messages,
        release=lambda messages: None,
        url=TEST_REDIS_URL,
        namespace=redis_namespace,
        middleware=[],
        wake_ups=wake_ups,
    )
    fetches: list[int] = []
    fetch_best = broker.fetch_best

    def counted(queue: str, count: int) -> list[bytes | None]:
        fetched = fetch_best(queue, count)
        fetches.append(len(fetched))
        return fetched

    broker.fetch_best = counted  # type: ignore[method-assign]
    return ClaimingConsumer(broker, "q", prefetch=4, timeout=100), fetches


def _consume_until(consumer: ClaimingConsumer, got: list[MessageProxy], stop: threading.Event) -> None:
    while not stop.is_set() and not got:
        if (message := next(consumer)) is not None:
            got.append(message)


def test_an_idle_consumer_waits_for_a_wake_up_instead_of_polling(redis_namespace: str) -> None:
    wake_ups = WakeUps(redis_namespace, idle_poll_s=30)
    consumer, fetches = _consumer(redis_namespace, wake_ups)
    client = consumer.broker.client
    got: list[MessageProxy] = []
    stop = threading.Event()
    wake_ups.start(client)
    thread = threading.Thread(target=_consume_until, args=(consumer, got, stop))
    try:
        wait_for(lambda: wake_ups.listening, 10, what="the subscription")
        thread.start()
        wait_for(lambda: fetches, 5, what="the first fetch")
        stop.wait(1.5)
        # Polling, as without wake-ups, would have fetched every 50-100 ms: 15-30 times.
        assert len(fetches) <= 2, fetches
        # A message that comes between an empty fetch and the wait that follows it still wakes
        # the consumer (the event is cleared before the fetch, not after).
        fetch_best = consumer.broker.fetch_best

        def then_send(queue: str, count: int) -> list[bytes | None]:
            fetched = fetch_best(queue, count)
            if not fetched and not got:
                relay.send_to_redis(client, redis_namespace, [_message("q", 7, priority=5)])
            return fetched

        consumer.broker.fetch_best = then_send  # type: ignore[method-assign]
        client.publish(wake.channel(redis_namespace), "q")  # a wake-up with nothing behind it
        wait_for(lambda: got, 5, what="the consumer to fetch the message sent after its fetch")
        assert got[0].args == (7,)
    finally:
        stop.set()
        wake_ups.stop()  # wakes the consumer if it still waits
        thread.join(10)
        consumer.close()
    assert not thread.is_alive()


def test_a_consumer_that_cannot_hear_wake_ups_polls(redis_namespace: str) -> None:
    consumer, fetches = _consumer(redis_namespace, WakeUps(redis_namespace, idle_poll_s=30))  # not started
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        assert next(consumer) is None
    consumer.close()
    assert len(fetches) >= 5  # every 5-100 ms, not every 30 s


def test_garbage_on_the_channel_leaves_the_subscriber_listening(redis_namespace: str) -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    wake_ups = WakeUps(redis_namespace)
    event = wake_ups.event("q")
    wake_ups.start(client)
    try:
        wait_for(lambda: wake_ups.listening, 10, what="the subscription")
        client.publish(wake.channel(redis_namespace), b"\xff\xfe not a queue name")
        event.clear()
        client.publish(wake.channel(redis_namespace), "q")
        wait_for(event.is_set, 5, what="the wake-up after the garbage")
        assert wake_ups.listening
    finally:
        wake_ups.stop()


def test_a_redis_that_refuses_publish_still_gets_the_messages() -> None:
    with PrivateRedis() as server:
        admin = redis.Redis.from_url(server.url)
        # An ACL user with every key and command but no channel (Redis 7's default for new users).
        admin.execute_command("ACL", "SETUSER", "sender", "on", ">secret", "~*", "+@all", "resetchannels")
        client = redis.Redis(port=server.port, username="sender", password="secret")
        relay.send_to_redis(client, "acl-test", [_message("q", 1), _message("q", 2)])
        assert admin.llen("acl-test:q") == 2
        assert admin.hlen("acl-test:q.msgs") == 2
        client.close()
        admin.close()


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
            wait_for(event.is_set, 5, what="the waiting consumers to poll again")
            server.start()  # same port
            wait_for(lambda: wake_ups.listening, 20, what="the subscription to come back")
            event.clear()
            relay.send_to_redis(client, "wake-test", [_message("q")])
            wait_for(event.is_set, 5, what="a wake-up after the restart")
        finally:
            wake_ups.stop()
            client.close()
