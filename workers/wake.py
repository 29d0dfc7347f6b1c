"""Wake-ups: a worker's idle consumers wait for word that messages arrived, instead of polling Redis.

Whatever sends messages to Redis (the relay and `enqueue`'s sender, both through
`relay.send_to_redis`) publishes their queues' names on the namespace's wake channel, in the same
pipeline. Each worker process subscribes once and wakes its consumers of those queues. An idle
consumer then asks Redis every `idle_poll_s` (for messages that come unannounced: the ones
Dramatiq's maintenance puts back) instead of every 50-100 ms, and a job sent to an idle worker
starts at once instead of at the consumer's next poll. While the subscription is down, the
consumers poll as they would without it.
"""

from __future__ import annotations

import logging
import threading

import dramatiq
import redis

logger = logging.getLogger("skyport.worker")

# An idle consumer that hears wake-ups still asks Redis this often (SKYPORT_WORKER_IDLE_POLL_S).
DEFAULT_IDLE_POLL_S = 1.0
# Waits between two attempts to subscribe again after the subscription broke.
RESUBSCRIBE_AFTER_S = (0.1, 5.0)


def channel(namespace: str) -> str:
    """The wake channel of a namespace (Redis channels ignore the database number)."""
    return f"{namespace}:__wake__"


def announce(pipe: redis.client.Pipeline, namespace: str, queues: set[str]) -> None:
    """Add to a sender's pipeline: messages came for these queues."""
    for queue in sorted(queues):
        pipe.publish(channel(namespace), queue)


class WakeUps(dramatiq.Middleware):
    """One subscriber thread per worker process (started at boot, stopped when the worker begins
    to shut down) and one event per queue, set when messages came for it. `listening` is True
    while the subscription stands: only then may a consumer wait on its event."""

    def __init__(self, namespace: str, idle_poll_s: float = DEFAULT_IDLE_POLL_S) -> None:
        self.namespace = namespace
        self.idle_poll_s = idle_poll_s
        self.listening = False
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    def event(self, queue: str) -> threading.Event:
        """The event a consumer of `queue` waits on (set when messages came for it)."""
        with self._lock:
            return self._events.setdefault(queue, threading.Event())

    def start(self, client: redis.Redis) -> None:
        # Each run has its own stop event: a stopped thread still finishing its last read leaves
        # the next run alone.
        self._stopped = threading.Event()
        threading.Thread(
            target=self._run, args=(client, self._stopped), name="skyport-wake-ups", daemon=True
        ).start()

    def stop(self) -> None:
        """Stop listening; every waiting consumer returns and polls again (a worker shutting down
        must not wait for a wake-up)."""
        self._stopped.set()
        self.listening = False
        self._wake_all()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.start(broker.client)  # type: ignore[attr-defined]

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop()

    def _wake_all(self) -> None:
        with self._lock:
            events = list(self._events.values())
        for event in events:
            event.set()

    def _run(self, client: redis.Redis, stopped: threading.Event) -> None:
        wait_s = RESUBSCRIBE_AFTER_S[0]
        while not stopped.is_set():
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(channel(self.namespace))
                while not stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        self.listening = not stopped.is_set()
                        wait_s = RESUBSCRIBE_AFTER_S[0]
                        self._wake_all()  # messages may have come while nobody listened
                    elif message["type"] == "message":
                        with self._lock:
                            event = self._events.get(message["data"].decode())
                        if event is not None:
                            event.set()
            except (redis.RedisError, OSError) as exc:
                if stopped.is_set():
                    return
                if self.listening:
                    logger.warning("wake-ups: subscription lost (%s); idle consumers poll Redis", exc)
                self.listening = False
                self._wake_all()  # the waiting consumers go back to polling
                stopped.wait(wait_s)
                wait_s = min(wait_s * 2, RESUBSCRIBE_AFTER_S[1])
            finally:
                pubsub.close()
