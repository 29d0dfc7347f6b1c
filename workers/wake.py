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

import contextlib
import logging
import threading
import time

import dramatiq
import redis

import config

logger = logging.getLogger("skyport.worker")

# Waits between two attempts to subscribe again after the subscription broke.
RESUBSCRIBE_AFTER_S = (0.1, 5.0)
# The subscriber pings this often; a connection that answers nothing for PING_EVERY_S * 3 is
# taken for lost (a proxy or a NAT may drop an idle connection without a word).
PING_EVERY_S = 5.0

_refused_logged = False


def channel(namespace: str) -> str:
    """The wake channel of a namespace (Redis channels ignore the database number)."""
    return f"{namespace}:__wake__"


def announce(pipe: redis.client.Pipeline, namespace: str, queues: set[str]) -> None:
    """Add to a sender's pipeline: messages came for these queues. Run it with
    `execute(raise_on_error=False)` and `refused()` on its replies: a refused announcement must
    not fail the send (the messages are in Redis)."""
    for queue in sorted(queues):
        pipe.publish(channel(namespace), queue)


def refused(replies: list[object]) -> None:
    """A Redis that refuses PUBLISH (an ACL user without channel rights) leaves the consumers to
    their idle polls: said once per process, not raised."""
    global _refused_logged
    errors = [r for r in replies if isinstance(r, Exception)]
    if errors and not _refused_logged:
        _refused_logged = True
        logger.warning("wake-ups not sent (%s): idle workers find new jobs at their next poll", errors[0])


class WakeUps(dramatiq.Middleware):
    """One subscriber thread per worker process (started at boot, stopped when the worker begins
    to shut down) and one event per queue, set when messages came for it. `listening` is True
    while the subscription stands: only then may a consumer wait on its event."""

    def __init__(self, namespace: str, idle_poll_s: float | None = None) -> None:
        self.namespace = namespace
        # How often an idle consumer that hears wake-ups still asks Redis (SKYPORT_WORKER_IDLE_POLL_S).
        self.idle_poll_s = config.get().worker.idle_poll_s if idle_poll_s is None else idle_poll_s
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
        self._listen(False, self._stopped, stop=True)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.start(broker.client)  # type: ignore[attr-defined]

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop()

    def _listen(self, listening: bool, stopped: threading.Event, stop: bool = False) -> None:
        """Under the lock, so that a subscription confirmed as the worker stops cannot outlive the
        stop; then every waiting consumer wakes (to fetch what came meanwhile, or to poll)."""
        with self._lock:
            if stop:
                stopped.set()
            self.listening = listening and not stopped.is_set()
            events = list(self._events.values())
        for event in events:
            event.set()

    def _wake(self, data: bytes | str) -> None:
        queue = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
        with self._lock:
            event = self._events.get(queue)
        if event is not None:
            event.set()

    def _run(self, client: redis.Redis, stopped: threading.Event) -> None:
        wait_s = RESUBSCRIBE_AFTER_S[0]
        warned = False  # about the subscription not standing, since it last stood
        while not stopped.is_set():
            pubsub = client.pubsub()
            try:
                pubsub.subscribe(channel(self.namespace))
                heard = pinged = time.monotonic()
                while not stopped.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    now = time.monotonic()
                    if message is not None:
                        heard = now
                        if message["type"] == "subscribe":
                            self._listen(True, stopped)  # and wake all: messages may have come
                            wait_s, warned = RESUBSCRIBE_AFTER_S[0], False
                        elif message["type"] == "message":
                            self._wake(message["data"])
                    if now - heard > 3 * PING_EVERY_S:
                        raise redis.ConnectionError(f"no answer from Redis for {now - heard:.0f} s")
                    if now - pinged > PING_EVERY_S:
                        pubsub.ping()
                        pinged = now
            except Exception as exc:  # any error: the consumers poll until the subscription is back
                if stopped.is_set():
                    return
                if not warned:  # a Redis that refuses SUBSCRIBE (ACL) says so once, not every 5 s
                    logger.warning("wake-ups: not subscribed (%s); idle consumers poll Redis", exc)
                    warned = True
                self._listen(False, stopped)
                stopped.wait(wait_s)
                wait_s = min(wait_s * 2, RESUBSCRIBE_AFTER_S[1])
            finally:
                with contextlib.suppress(Exception):
                    pubsub.close()
