"""The claiming Redis consumer (workers/consumer.py) on the real Redis: batches, acks, refills."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import dramatiq
import dramatiq.worker
import pytest
import redis
from dramatiq.broker import MessageProxy

from tests.conftest import TEST_REDIS_URL
from workers import consumer as consumer_module
from workers.consumer import ClaimingConsumer, ClaimingRedisBroker
from workers.middleware import LedgerMiddleware

QUEUE = "default"


class _Claims:
    """Runs the messages whose first argument is even; records each batch it was handed, and the
    messages released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.released: list[int] = []
        self.failing = False

    def release(self, messages: list[MessageProxy]) -> None:
        if self.failing:
            raise RuntimeError("ledger out of reach")
        self.released += [m.args[0] for m in messages]

    def __call__(self, messages: list[MessageProxy]) -> list[MessageProxy]:
        if self.failing:
            raise RuntimeError("ledger out of reach")
        self.batches.append([m.args[0] for m in messages])
        return [m for m in messages if m.args[0] % 2 == 0]


@pytest.fixture
def claims() -> _Claims:
    return _Claims()


@pytest.fixture
def broker(redis_namespace: str, claims: _Claims) -> ClaimingRedisBroker:
    broker = ClaimingRedisBroker(
        claim=claims, release=claims.release, url=TEST_REDIS_URL, namespace=redis_namespace, middleware=[]
    )
    dramatiq.actor(lambda n: None, actor_name="noop", queue_name=QUEUE, broker=broker)
    return broker


def _send(broker: ClaimingRedisBroker, numbers: range, actor: str = "noop") -> None:
    for n in numbers:
        message = dramatiq.Message(queue_name=QUEUE, actor_name=actor, args=(n,), kwargs={}, options={})
        broker.enqueue(message)


def _take(consumer: ClaimingConsumer, count: int) -> list[MessageProxy]:
    taken = []
    for _ in range(count * 10):
        if (message := next(consumer)) is not None:
            taken.append(message)
        if len(taken) == count:
            return taken
    raise AssertionError(f"took {len(taken)} of {count} messages")


def _stored(redis_namespace: str) -> int:
    """Messages Redis still holds for the queue (acknowledged ones are deleted)."""
    return redis.Redis.from_url(TEST_REDIS_URL).hlen(f"{redis_namespace}:{QUEUE}.msgs")


def test_a_fetch_is_claimed_as_one_batch_and_unclaimed_messages_are_acknowledged(
    broker: ClaimingRedisBroker, claims: _Claims, redis_namespace: str
) -> None:
    _send(broker, range(10))
    consumer = broker.consume(QUEUE, prefetch=8, timeout=100)
    taken = _take(consumer, 4)
    assert claims.batches == [list(range(8))]  # one claim for the whole fetch
    assert [m.args[0] for m in taken] == [0, 2, 4, 6]
    assert len(broker.pending_acks[QUEUE]) == 4  # the odd ones: acknowledged with the next fetch
    # 4 of 8 in progress: half the prefetch is free, so it fetches the last two at once.
    assert [m.args[0] for m in _take(consumer, 1)] == [8]
    assert claims.batches[1:] == [[8, 9]]
    assert _stored(redis_namespace) == 10 - 4  # 1, 3, 5, 7 were never handed out
    for message in taken:
        consumer.ack(message)
    consumer.close()  # sends the acks still pending
    assert _stored(redis_namespace) == 1  # only message 8, handed out and not yet acknowledged


def test_it_waits_for_acks_instead_of_fetching_one_slot_at_a_time(
    broker: ClaimingRedisBroker, claims: _Claims
) -> None:
    _send(broker, range(0, 40, 2))  # all even: every message runs
    consumer = broker.consume(QUEUE, prefetch=8, timeout=50)
    taken = _take(consumer, 8)
    consumer.ack(taken[0])  # 7 of 8 in progress: one free slot is not worth a fetch
    assert next(consumer) is None
    assert len(claims.batches) == 1
    for message in taken[1:4]:
        consumer.ack(message)  # 4 free: half the prefetch
    assert next(consumer) is not None
    assert [len(b) for b in claims.batches] == [8, 4]


def test_a_failed_claim_gives_the_messages_back_to_the_queue(
    broker: ClaimingRedisBroker, claims: _Claims, redis_namespace: str
) -> None:
    _send(broker, range(0, 6, 2))
    consumer = broker.consume(QUEUE, prefetch=8, timeout=50)
    claims.failing = True
    with pytest.raises(RuntimeError, match="ledger out of reach"):
        next(consumer)
    assert consumer.queued_message_ids == set()
    consumer.close()
    claims.failing = False
    again = broker.consume(QUEUE, prefetch=8, timeout=50)
    assert sorted(m.args[0] for m in _take(again, 3)) == [0, 2, 4]  # nothing lost
    assert _stored(redis_namespace) == 3


def _queued(redis_namespace: str) -> int:
    return redis.Redis.from_url(TEST_REDIS_URL).llen(f"{redis_namespace}:{QUEUE}")


@pytest.mark.parametrize("ledger_reachable", [True, False])
def test_closing_hands_back_claimed_messages_no_thread_took(
    broker: ClaimingRedisBroker, claims: _Claims, redis_namespace: str, ledger_reachable: bool
) -> None:
    _send(broker, range(0, 8, 2))
    consumer = broker.consume(QUEUE, prefetch=8, timeout=50)
    taken = _take(consumer, 1)  # 3 more claimed, waiting in the consumer
    claims.failing = not ledger_reachable
    consumer.ack(taken[0])
    consumer.close()
    if ledger_reachable:  # their jobs are queued again in the ledger: the Redis copies go
        assert claims.released == [2, 4, 6]
        assert (_stored(redis_namespace), _queued(redis_namespace)) == (0, 0)
    else:  # the messages go back to the Redis queue, to be claimed again
        assert claims.released == []
        assert (_stored(redis_namespace), _queued(redis_namespace)) == (3, 3)


def test_a_message_for_an_actor_this_worker_lacks_is_not_claimed(
    broker: ClaimingRedisBroker, claims: _Claims
) -> None:
    _send(broker, range(0, 4, 2), actor="elsewhere")  # declared by other workers only
    _send(broker, range(4, 6, 2))
    consumer = broker.consume(QUEUE, prefetch=8, timeout=50)
    taken = _take(consumer, 3)
    assert claims.batches == [[4]]  # only the message of a known actor was claimed
    assert sorted(m.args[0] for m in taken) == [0, 2, 4]  # the others go on to Dramatiq, which
    consumer.close()  # dead-letters a message of an unknown actor


def _push_raw(redis_namespace: str, message_id: str, data: bytes) -> None:
    """A message as Dramatiq's enqueue stores it (its data under an id, the id in the queue)."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.hset(f"{redis_namespace}:{QUEUE}.msgs", message_id, data)
    client.rpush(f"{redis_namespace}:{QUEUE}", message_id)


def test_undecodable_messages_are_set_aside_and_the_valid_ones_fetched_with_them_run(
    broker: ClaimingRedisBroker, claims: _Claims, redis_namespace: str
) -> None:
    _send(broker, range(0, 4, 2))
    _push_raw(redis_namespace, "poison-1", b"\xff\xfe not json")
    _push_raw(redis_namespace, "poison-2", b'{"valid json": "but not a message"}')
    wrong_types = {
        "queue_name": QUEUE,
        "actor_name": "noop",
        "args": [1],
        "kwargs": {},
        "options": {"job_id": "x"},
        "message_id": ["not", "a string"],
        "message_timestamp": 0,
    }
    _push_raw(redis_namespace, "poison-3", json.dumps(wrong_types).encode())
    _send(broker, range(4, 8, 2))
    consumer = broker.consume(QUEUE, prefetch=8, timeout=100)
    taken = _take(consumer, 4)  # one fetch: the four valid messages come out of it at once
    assert [m.args[0] for m in taken] == [0, 2, 4, 6]
    assert claims.batches == [[0, 2, 4, 6]]
    client = redis.Redis.from_url(TEST_REDIS_URL)
    dead = f"{redis_namespace}:{QUEUE}.XQ"
    assert sorted(client.zrange(dead, 0, -1)) == [b"poison-1", b"poison-2", b"poison-3"]
    assert client.hget(f"{dead}.msgs", "poison-1") == b"\xff\xfe not json"  # the raw bytes, for ops
    assert client.hget(f"{redis_namespace}:{QUEUE}.msgs", "poison-1") is None
    acks = f"{redis_namespace}:__acks__.{broker.broker_id}.{QUEUE}"
    assert not {b"poison-1", b"poison-2", b"poison-3"} & client.smembers(
        acks
    )  # not held by this worker either


def _heartbeat(broker: ClaimingRedisBroker) -> float | None:
    """The worker's last heartbeat in Redis, as Dramatiq's maintenance reads it."""
    client = redis.Redis.from_url(TEST_REDIS_URL)
    return client.zscore(f"{broker.namespace}:__heartbeats__", broker.broker_id)


def _forget_heartbeat(broker: ClaimingRedisBroker) -> None:
    """As if the worker had never sent a heartbeat: the next one sent shows."""
    redis.Redis.from_url(TEST_REDIS_URL).zrem(f"{broker.namespace}:__heartbeats__", broker.broker_id)


def test_a_fetch_carries_the_pending_acks_and_the_heartbeat_in_one_call(
    broker: ClaimingRedisBroker, redis_namespace: str
) -> None:
    broker.maintenance_chance = 0  # Dramatiq's maintenance call aside
    calls: list[int] = []
    script = broker.fetch_best_script
    broker.fetch_best_script = lambda **kw: calls.append(1) or script(**kw)  # type: ignore[method-assign]
    _send(broker, range(0, 8, 2))
    consumer = broker.consume(QUEUE, prefetch=2, timeout=50)
    first = _take(consumer, 2)
    for message in first:
        consumer.ack(message)
    _forget_heartbeat(broker)
    calls.clear()
    assert [m.args[0] for m in _take(consumer, 1)] == [4]
    assert calls == [1]  # one call: the acks, the heartbeat and the fetch
    assert _stored(redis_namespace) == 2  # 0 and 2 acknowledged by that fetch: their data gone
    assert _heartbeat(broker) is not None
    consumer.close()


def test_a_consumer_whose_slots_stay_busy_still_sends_its_heartbeat_and_acks(
    broker: ClaimingRedisBroker, redis_namespace: str
) -> None:
    _send(broker, range(0, 8, 2))
    consumer = broker.consume(QUEUE, prefetch=4, timeout=20)
    taken = _take(consumer, 4)  # every slot busy: long jobs
    consumer.ack(taken[0])  # 3 of 4 still running: no fetch for one free slot
    _forget_heartbeat(broker)
    assert next(consumer) is None
    assert _heartbeat(broker) is None  # not due yet
    broker.last_call -= broker.heartbeat_timeout / 1000  # as if the jobs ran that long
    assert next(consumer) is None
    assert _heartbeat(broker) is not None
    assert _stored(redis_namespace) == 3  # the finished job's ack went with it
    consumer.close()


def test_dramatiqs_maintenance_still_gives_a_dead_workers_messages_back(
    broker: ClaimingRedisBroker, redis_namespace: str
) -> None:
    _send(broker, range(0, 4, 2))
    dead = broker.consume(QUEUE, prefetch=8, timeout=50)
    assert len(_take(dead, 2)) == 2  # fetched, never acknowledged: its process died
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.zadd(f"{redis_namespace}:__heartbeats__", {broker.broker_id: 1})  # long silent
    claims = _Claims()  # runs the even numbers: all of them here
    survivor = ClaimingRedisBroker(
        claim=claims, release=claims.release, url=TEST_REDIS_URL, namespace=redis_namespace, middleware=[]
    )
    dramatiq.actor(lambda n: None, actor_name="noop", queue_name=QUEUE, broker=survivor)
    survivor.maintenance_chance = 1_000_000  # every fetch
    consumer = survivor.consume(QUEUE, prefetch=8, timeout=50)
    assert sorted(m.args[0] for m in _take(consumer, 2)) == [0, 2]
    consumer.close()


def test_no_delay_queue_is_declared_and_a_dramatiq_delay_is_refused(broker: ClaimingRedisBroker) -> None:
    assert broker.get_declared_queues() == {QUEUE}
    assert broker.get_declared_delay_queues() == set()  # no consumer polls one
    message = dramatiq.Message(queue_name=QUEUE, actor_name="noop", args=(1,), kwargs={}, options={})
    with pytest.raises(ValueError, match=r"workers.enqueue\(\.\.\., delay=\.\.\.\)"):
        broker.enqueue(message, delay=1000)


def test_a_consumer_busy_with_short_jobs_fetches_more_at_once(
    broker: ClaimingRedisBroker, claims: _Claims, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "PACE_WINDOW_S", 0.05)
    monkeypatch.setattr(consumer_module, "CLAIMED_WORK_S", 1.0)  # a busy machine's slow turns still count
    _send(broker, range(0, 400, 2))  # all even: every message runs
    consumer = broker.consume(QUEUE, prefetch=8, timeout=50)
    for message in _take(consumer, 8):  # 8 jobs done at once: dozens a second at the least
        consumer.ack(message)
    time.sleep(0.06)
    _take(consumer, 1)
    most = 8 * consumer_module.PREFETCH_GROWTH
    assert 8 < len(claims.batches[-1]) <= most, claims.batches
    consumer.close()


def test_a_slow_consumer_keeps_its_prefetch(
    broker: ClaimingRedisBroker, claims: _Claims, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(consumer_module, "PACE_WINDOW_S", 0.05)
    _send(broker, range(0, 40, 2))
    consumer = broker.consume(QUEUE, prefetch=8, timeout=50)
    taken = _take(consumer, 8)
    for message in taken[:4]:  # 4 jobs in 0.3 s: 13 a second hold 1.3 jobs of work in 0.1 s
        time.sleep(0.075)
        consumer.ack(message)
    _take(consumer, 1)
    assert [len(b) for b in claims.batches] == [8, 4]
    consumer.close()


def test_a_prefetch_set_in_the_environment_stays_as_set(
    broker: ClaimingRedisBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dramatiq.worker, "QUEUE_PREFETCH", 64)
    worker = SimpleNamespace(worker_threads=8, queue_prefetch=64, worker_timeout=1000)
    LedgerMiddleware().before_worker_boot(broker, worker)  # type: ignore[arg-type]
    assert (worker.queue_prefetch, broker.prefetch_growth) == (64, 1)
    monkeypatch.setattr(dramatiq.worker, "QUEUE_PREFETCH", 0)
    other = ClaimingRedisBroker(claim=list, release=print, url=TEST_REDIS_URL, middleware=[])
    LedgerMiddleware().before_worker_boot(other, worker)  # type: ignore[arg-type]
    assert (worker.queue_prefetch, other.prefetch_growth) == (32, consumer_module.PREFETCH_GROWTH)
