"""The Redis broker's consumer, claiming jobs as it fetches them.

Dramatiq's Redis consumer fetches up to `prefetch` messages in one call and hands them to the
worker threads one by one. This one also claims their jobs in the ledger (queued -> running) in
one statement per fetch, on the consumer's own thread, so a worker thread starts a job without a
database round trip of its own. A message whose job is not queued (a duplicate, a late
redelivery, a cancelled job) is acknowledged here and never reaches a worker thread.

It also replaces the consumer's wait when all its prefetched messages are in progress: Dramatiq
polls with a growing backoff (up to the idle timeout), leaving threads idle after their messages
are acknowledged; this one wakes as soon as half its prefetch is free again, and fetches that
many at once. Its prefetch follows the pace of its jobs: up to PREFETCH_GROWTH times the one it
was given while its threads finish many short jobs, never more than they get through in
CLAIMED_WORK_S. And the worker threads' acks are sent by the consumer's thread, many in one call:
the next fetch carries them, with the heartbeat, in the same Lua call (Dramatiq sends one call
per ack from the worker thread, and one per fetch). An idle consumer waits for a wake-up
(workers/wake.py) rather than polling, while its process hears them.

A claimed job is `running` from the fetch on: when a worker process dies, its fetched messages'
jobs are recovered by the lifeline (workers/lifeline.py) like the ones it was running, instead of
waiting for Dramatiq's lazy recovery of unacknowledged messages.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable

import redis
from dramatiq import Message
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis, dq_name, xq_name
from dramatiq.errors import ConnectionClosed

from workers import observability, wake
from workers.relay import priority_list

logger = logging.getLogger("skyport.worker")

# messages -> the ones to run (their jobs claimed, or not ledger jobs at all); the others are
# acknowledged without running.
Claim = Callable[[list[MessageProxy]], list[MessageProxy]]
# Claimed messages that will not run here: their jobs are queued again (raises when it cannot).
Release = Callable[[list[MessageProxy]], None]
# Acks sent in one call at most.
MAX_ACKS_PER_CALL = 1000
# A consumer busy with short jobs holds up to this many times its prefetch: larger fetches and
# claims, fewer of each per job (docs/benchmarks.md, prefetch). It never holds more than its
# threads finish in CLAIMED_WORK_S at their current pace, so a claimed job does not wait long for
# a thread while other workers idle, and a queue of long jobs keeps the base prefetch.
PREFETCH_GROWTH = 4
CLAIMED_WORK_S = 0.1
# The pace is measured over this long.
PACE_WINDOW_S = 0.5
# Dramatiq runs its maintenance (messages of dead consumers back to their queue, old dead letters
# dropped) at random, one fetch in a thousand; an idle consumer that waits for wake-ups fetches
# about once a second, so a queue's maintenance also runs when none ran for this long.
MAINTENANCE_EVERY_S = 60.0


# Moves fetched messages whose data cannot be decoded (ARGV[2..], their raw bytes) out of the
# consumer's fetched set and the queue's messages into Dramatiq's dead-letter set of the queue
# (`<queue>.XQ`, scored by ARGV[1], the time in ms; Dramatiq's maintenance expires it like its own
# dead letters), keeping the raw bytes there for ops. Returns the ids moved. The fetch returns
# data without ids, so a message is found by its data among the consumer's fetched ones.
DEAD_LETTER_RAW = """
local moved = {}
local poison = {}
for i = 2, #ARGV do poison[ARGV[i]] = true end
for _, id in ipairs(redis.call("smembers", KEYS[1])) do
    local data = redis.call("hget", KEYS[2], id)
    if data and poison[data] then
        redis.call("srem", KEYS[1], id)
        redis.call("hdel", KEYS[2], id)
        redis.call("zadd", KEYS[3], ARGV[1], id)
        redis.call("hset", KEYS[4], id, data)
        table.insert(moved, id)
    end
end
return moved
"""


# One round trip per fetch: sends the acks of ARGV[4..] (as Dramatiq's "ack" command does, a
# message's data is deleted only if its id was still in the consumer's set), the heartbeat
# (KEYS[3], scored ARGV[2], member ARGV[3]: what Dramatiq's dispatch script writes at each call),
# then fetches up to ARGV[1] messages from the queue's lists, best priority first (KEYS[4..]: the
# queue's own list, then priorities 1..9), as Dramatiq's fetch does from its one list: each id to
# the consumer's set of fetched messages (KEYS[1]), the data from the queue's hash (KEYS[2]).
FETCH_BEST = """
for i = 4, #ARGV do
    if redis.call("srem", KEYS[1], ARGV[i]) > 0 then
        redis.call("hdel", KEYS[2], ARGV[i])
    end
end
redis.call("zadd", KEYS[3], ARGV[2], ARGV[3])
local wanted = tonumber(ARGV[1])
local ids = {}
for k = 4, #KEYS do
    while #ids < wanted do
        local id = redis.call("lpop", KEYS[k])
        if not id then break end
        table.insert(ids, id)
        redis.call("sadd", KEYS[1], id)
    end
end
if #ids == 0 then return {} end
return redis.call("hmget", KEYS[2], unpack(ids))
"""
# Priorities a job may have: 0 (Dramatiq's own list, fetched first) to 9.
PRIORITIES = range(10)


class PrefetchPace:
    """A consumer's prefetch from the pace of its acks: the base, or up to `most` while its threads
    finish more than that in CLAIMED_WORK_S."""

    def __init__(self, base: int, most: int, now: float) -> None:
        self.base, self.most = base, max(base, most)
        self.acks = 0  # counted on the worker threads; a count lost to a race only skews the estimate
        self._since = now
        self.prefetch = base

    def update(self, now: float) -> int:
        elapsed = now - self._since
        if elapsed >= PACE_WINDOW_S:
            rate = self.acks / elapsed
            self.acks, self._since = 0, now
            self.prefetch = min(self.most, max(self.base, int(rate * CLAIMED_WORK_S)))
        return self.prefetch


class ClaimingRedisBroker(RedisBroker):
    """A RedisBroker whose consumers claim ledger jobs at fetch time (see the module's text)."""

    def __init__(
        self, *, claim: Claim, release: Release, wake_ups: wake.WakeUps | None = None, **kwargs: object
    ) -> None:
        super().__init__(**kwargs)
        self.claim = claim
        self.release = release
        self.wake_ups = wake_ups
        self.maintained: dict[str, float] = {}  # queue -> time.monotonic() of its last maintenance
        self.dead_letter_raw = self.client.register_script(DEAD_LETTER_RAW)
        self.fetch_best_script = self.client.register_script(FETCH_BEST)
        # Acks not yet sent, per queue: a consumer replaced after a connection error leaves its
        # acks to the next one.
        self.pending_acks: dict[str, deque[str]] = defaultdict(deque)
        self.last_call = time.monotonic()  # the last fetch: it carried the heartbeat
        self.prefetch_growth = PREFETCH_GROWTH  # 1: the prefetch stays as given

    def _take_acks(self, queue_name: str) -> list[str]:
        pending = self.pending_acks[queue_name]
        ids = []
        while pending and len(ids) < MAX_ACKS_PER_CALL:
            ids.append(pending.popleft())
        return ids

    def _acks_keys(self, queue_name: str) -> list[str]:
        """The consumer's set of fetched messages, the queue's hash of messages."""
        acks = f"{self.namespace}:__acks__.{self.broker_id}.{queue_name}"
        return [acks, f"{self.namespace}:{queue_name}.msgs"]

    def flush_acks(self, queue_name: str) -> None:
        """Send the pending acks (and the heartbeat), fetching nothing."""
        self.fetch_best(queue_name, 0)

    def set_aside(self, queue_name: str, raw: list[bytes]) -> list[str]:
        """Dead-letter fetched messages that cannot be decoded, raw bytes kept (see DEAD_LETTER_RAW)."""
        keys = [
            *self._acks_keys(queue_name),
            f"{self.namespace}:{xq_name(queue_name)}",
            f"{self.namespace}:{xq_name(queue_name)}.msgs",
        ]
        moved = self.dead_letter_raw(keys=keys, args=[int(time.time() * 1000), *raw])
        return [m.decode() if isinstance(m, bytes) else str(m) for m in moved]

    def fetch_best(self, queue_name: str, count: int) -> list[bytes | None]:
        """Up to `count` messages, the best priority first (workers/relay.py, `priority_list`), in
        one call that also sends the pending acks and the heartbeat (FETCH_BEST). As often as
        Dramatiq's own fetch would, its dispatch script runs first for its maintenance (messages
        of dead workers back to their queue, old dead letters dropped)."""
        now = time.monotonic()
        last = self.maintained.setdefault(queue_name, now)
        if self._should_do_maintenance("fetch") or now - last > MAINTENANCE_EVERY_S:
            self.maintain(queue_name)
            self.maintained[queue_name] = now
        ids = self._take_acks(queue_name)
        keys = [
            *self._acks_keys(queue_name),
            f"{self.namespace}:__heartbeats__",
            *(priority_list(self.namespace, queue_name, p) for p in PRIORITIES),
        ]
        count = min(count, self._max_unpack_size())  # as Dramatiq's fetch: unpack() has a limit
        try:
            fetched = self.fetch_best_script(keys=keys, args=[count, current_millis(), self.broker_id, *ids])
        except redis.RedisError:  # sent again with the next call (an ack sent twice does nothing)
            self.pending_acks[queue_name].extendleft(reversed(ids))
            raise
        self.last_call = time.monotonic()
        return fetched

    def maintain(self, queue_name: str) -> None:
        """Dramatiq's dispatch script with its maintenance on, fetching nothing."""
        args = ["fetch", current_millis(), queue_name, self.broker_id, self.heartbeat_timeout]
        self.scripts["dispatch"](
            args=[*args, self.dead_message_ttl, "1", self._max_unpack_size(), 0], keys=[self.namespace]
        )

    def declare_queue(self, queue_name: str) -> None:
        """A queue without Dramatiq's delay queue: a delayed job waits in the ledger (its `eta`)
        and nothing here sends Dramatiq delayed messages, so no consumer polls one."""
        if queue_name not in self.queues:
            self.emit_before("declare_queue", queue_name)
            self.queues.add(queue_name)
            self.emit_after("declare_queue", queue_name)

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        if delay is not None:
            raise ValueError(
                f"{message.actor_name}: no worker consumes Dramatiq's delay queues here; "
                "enqueue the job with workers.enqueue(..., delay=...)"
            )
        enqueued = super().enqueue(message)
        self.announce(message.queue_name)
        return enqueued

    def announce(self, queue_name: str) -> None:
        """Wake the idle consumers of a queue (workers/wake.py): messages went to it outside
        relay.send_to_redis. Without it they find them at their next poll."""
        with contextlib.suppress(redis.RedisError), self.client.pipeline(transaction=False) as pipe:
            wake.announce(pipe, self.namespace, {queue_name})
            wake.refused(pipe.execute(raise_on_error=False))

    def consume(self, queue_name: str, prefetch: int = 1, timeout: int = 5000) -> _RedisConsumer:
        if queue_name == dq_name(queue_name):  # declared by hand: Dramatiq's own consumer
            return super().consume(queue_name, prefetch, timeout)
        return ClaimingConsumer(self, queue_name, prefetch, timeout)


def _well_formed(message: Message) -> bool:
    """Fields of the types the worker relies on (Message.decode checks only that they exist)."""
    job_id = message.options.get("job_id") if isinstance(message.options, dict) else None
    return (
        isinstance(message.message_id, str)
        and isinstance(message.actor_name, str)
        and isinstance(message.queue_name, str)
        and isinstance(message.args, list | tuple)
        and isinstance(message.kwargs, dict)
        and isinstance(message.options, dict)
        and (job_id is None or (isinstance(job_id, int) and not isinstance(job_id, bool)))
    )


class ClaimingConsumer(_RedisConsumer):
    broker: ClaimingRedisBroker

    def __init__(self, broker: ClaimingRedisBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.claimed: deque[MessageProxy] = deque()
        self.slots_freed = threading.Event()  # set by acks and nacks (on the worker threads)
        self.pace = PrefetchPace(prefetch, prefetch * broker.prefetch_growth, time.monotonic())
        self.wake = broker.wake_ups.event(queue_name) if broker.wake_ups is not None else None
        self.woken = False  # the last wait ended with a wake-up, not a timeout

    @property
    def refill_at(self) -> int:
        """Free slots worth a fetch while others run: half the prefetch."""
        return max(1, self.prefetch // 2)

    def requeue(self, messages: Iterable[Message]) -> None:
        """Dramatiq's requeue (fetched messages back to the queue), then a wake-up for them."""
        messages = list(messages)
        super().requeue(messages)
        if messages:
            self.broker.announce(self.queue_name)

    def ack(self, message: MessageProxy) -> None:
        """On a worker thread: the ack is sent by the consumer's thread, with the others."""
        self.broker.pending_acks[self.queue_name].append(message.options["redis_message_id"])
        self.queued_message_ids.discard(message.message_id)
        self.pace.acks += 1
        self.slots_freed.set()

    def nack(self, message: MessageProxy) -> None:
        try:
            super().nack(message)
        finally:
            self.slots_freed.set()

    def close(self) -> None:
        """At shutdown, or when Dramatiq replaces the consumer after a connection error: claimed
        messages no worker thread took are handed back, their jobs queued again in the ledger
        (the relay publishes them anew) or, if the ledger cannot be reached, the messages put
        back in the Redis queue (a worker claims them again: same worker, same message)."""
        leftovers = list(self.claimed)
        self.claimed.clear()
        self.queued_message_ids.difference_update(m.message_id for m in leftovers)
        released = False
        if leftovers:
            try:
                self.broker.release(leftovers)
                released = True
            except Exception:
                logger.exception("could not queue %d fetched jobs again; back to Redis", len(leftovers))
        with contextlib.suppress(redis.RedisError):  # then Dramatiq recovers them later
            if released:
                self.broker.pending_acks[self.queue_name].extend(
                    m.options["redis_message_id"] for m in leftovers
                )
            elif leftovers:
                self.requeue(leftovers)
            while self.broker.pending_acks[self.queue_name]:
                self.broker.flush_acks(self.queue_name)
        super().close()

    def __next__(self) -> MessageProxy | None:
        try:
            while True:
                if self.claimed:
                    return self.claimed.popleft()
                self.prefetch = self.pace.update(time.monotonic())
                free = self.prefetch - len(self.queued_message_ids)
                in_progress = len(self.queued_message_ids)
                if in_progress and free < self.refill_at:
                    # Wait for acks rather than poll (they go with the next fetch); the timeout
                    # lets the worker check for shutdown. Long jobs: the heartbeat still goes.
                    if time.monotonic() - self.broker.last_call > self.broker.heartbeat_timeout / 3000:
                        self.broker.flush_acks(self.queue_name)
                    self.slots_freed.clear()
                    if self.prefetch - len(self.queued_message_ids) < self.refill_at:
                        self.slots_freed.wait(self.timeout / 1000)
                    return None
                if self.wake is not None:
                    self.wake.clear()  # before the fetch: a message sent after it wakes the wait
                fetched = self.broker.fetch_best(self.queue_name, free)
                if not fetched:
                    self._idle()
                    return None
                self.misses, self.woken = 0, False
                self._claim(self._decode(fetched))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise ConnectionClosed(exc) from None

    def _idle(self) -> None:
        """Nothing fetched: poll again after a growing backoff, or, while this process hears
        wake-ups, wait for one (at most `idle_poll_s`). A consumer woken for messages that another
        process took waits out the backoff first: it answers wake-ups no more often than it polled."""
        self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
        wake_ups = self.broker.wake_ups
        if self.wake is None or wake_ups is None or not wake_ups.listening:
            time.sleep(backoff_ms / 1000)
            return
        if self.woken:
            time.sleep(backoff_ms / 1000)
        # The fetch carries the heartbeat: wait no longer than a third of Dramatiq's timeout.
        self.woken = self.wake.wait(min(wake_ups.idle_poll_s, self.broker.heartbeat_timeout / 3000))

    def _decode(self, fetched: list[bytes | None]) -> list[MessageProxy]:
        """The fetched messages that decode; the others are set aside at once, so that one poison
        message never holds up the valid ones fetched with it."""
        decoded, poison = [], []
        for data in fetched:
            if data is None:
                continue
            try:
                message = Message.decode(data)
            except Exception:  # DecodeError, or JSON that is not a message (missing fields)
                message = None
            if message is not None and _well_formed(message):
                decoded.append(MessageProxy(message))
            else:
                poison.append(data)
        if poison:
            moved = self.broker.set_aside(self.queue_name, poison)
            observability.count_poison_messages(self.queue_name, len(poison))
            logger.error(
                "queue %s: %d undecodable message(s) dead-lettered with their raw bytes (%s): %r",
                self.queue_name,
                len(poison),
                ", ".join(moved),
                poison[0][:200],
            )
        return decoded

    def _claim(self, fetched: list[MessageProxy]) -> None:
        self.queued_message_ids.update(m.message_id for m in fetched)
        # A message for an actor this worker does not have is not claimed: Dramatiq dead-letters
        # it, and its job stays queued for a worker that has the actor (the lifeline republishes it).
        messages = [m for m in fetched if m.actor_name in self.broker.actors]
        try:
            runnable = self.broker.claim(messages) if messages else []
        except BaseException:
            # The ledger is out of reach: hand the messages back to the queue for a later try.
            self.requeue(fetched)
            self.queued_message_ids.difference_update(m.message_id for m in fetched)
            raise
        run_ids = {m.message_id for m in runnable}
        for message in messages:
            if message.message_id not in run_ids:
                self.ack(message)
        self.claimed.extend(runnable)
        self.claimed.extend(m for m in fetched if m.actor_name not in self.broker.actors)
