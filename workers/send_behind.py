"""Sending behind the commit: jobs that `enqueue` has just committed go to Redis from a thread of
the process's own, so that the call returns once its row is durable, without a Redis round trip.

A job is enqueued when its row commits; the message only wakes a worker sooner than the relay
would. So the caller need not wait for it: the thread takes every job committed meanwhile and
sends them in one pipeline (concurrent callers share it), in the order they committed. If Redis
refuses, `send` leaves them to the relay; if the process dies first, the lifeline publishes them
again after `republish_after_s`. When the process ends what is left is sent first (`flush`), so
a short script, or a worker process whose actors enqueued jobs, does not leave them to the
lifeline.
"""

from __future__ import annotations

import atexit
import logging
import math
import multiprocessing.util
import os
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger("skyport.enqueue")

Item = TypeVar("Item")

# What `flush` waits at most at interpreter exit: about two Redis timeouts.
EXIT_FLUSH_S = 2.0
# Once it has a job to send, the thread waits for the jobs that keep coming, and sends when none
# came for DEFAULT_PAUSE_S or it has waited DEFAULT_LINGER_S. A Redis round trip costs its client
# 0.07-0.2 ms of CPU on the benchmark machine, by day (docs/benchmarks.md), as much as the rest of
# an enqueue, and the workers fetch, claim and record a pipeline's jobs together: a process that
# enqueues a job every millisecond sends them about 50 at a time, at a third less CPU per job in all
# than 5 at a time. A job that comes after a quiet spell of DEFAULT_LINGER_S goes at once:
# lingering would only delay it (idle workers wait for it: workers/wake.py).
DEFAULT_LINGER_S = 0.05
DEFAULT_PAUSE_S = 0.005
# The most jobs in one pipeline.
DEFAULT_MAX_BATCH = 1000


class SendBehind(Generic[Item]):
    """`put(items)` returns at once; `send(items)` runs on the sender's thread with everything put
    meanwhile, oldest first. Its errors are logged: `send` itself leaves what failed to the relay."""

    def __init__(
        self,
        name: str,
        send: Callable[[list[Item]], None],
        linger_s: float = DEFAULT_LINGER_S,
        max_batch: int = DEFAULT_MAX_BATCH,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> None:
        self.name = name
        self.send = send
        self.linger_s = linger_s
        self.pause_s = min(pause_s, linger_s)
        self.max_batch = max_batch
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # In a forked child: the parent's thread is not here, and its items are the parent's to send.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._items: list[Item] = []
        self._sending = 0  # items taken by the thread and not yet sent
        self._idle = False  # the thread waits for items: the next put wakes it
        self._last_put = 0.0  # time.monotonic() of the latest put
        self._last_send = -math.inf  # time.monotonic() when the latest send ended
        self._flushing = 0  # callers of flush waiting: the thread sends without lingering
        self._thread: threading.Thread | None = None

    def put(self, items: list[Item]) -> None:
        if not items:
            return
        with self._lock:
            self._items.extend(items)
            self._last_put = time.monotonic()
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()  # may raise (no thread left): the next put tries again
                if self._thread is None:
                    self._flush_at_exit()
                self._thread = thread
            elif self._idle or len(self._items) >= self.max_batch:  # else it lingers: no wake-up
                self._changed.notify_all()

    def backlog(self) -> int:
        """Items put and not yet sent."""
        return len(self._items) + self._sending

    def _flush_at_exit(self) -> None:
        """Once per process: atexit for an interpreter that exits; a multiprocessing finalizer for
        a child of multiprocessing (Dramatiq's worker processes), which ends without atexit."""
        atexit.register(self.flush, EXIT_FLUSH_S)
        multiprocessing.util.Finalize(None, self.flush, args=(EXIT_FLUSH_S,), exitpriority=100)

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything put so far was sent (or left to the relay); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            self._flushing += 1
            self._changed.notify_all()  # a lingering thread sends now
            try:
                while self._items or self._sending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._changed.wait(left)
            finally:
                self._flushing -= 1
        return True

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._items:
                    self._idle = True
                    self._changed.wait()
                self._idle = False
                # Linger while jobs keep coming: on a busy process one pipeline then carries
                # many, and the workers fetch, claim and record them together.
                now = time.monotonic()
                deadline = now + self.linger_s
                quiet = now - self._last_send >= self.linger_s
                while len(self._items) < self.max_batch and not self._flushing and not quiet:
                    left = min(deadline, self._last_put + self.pause_s) - time.monotonic()
                    if left <= 0:
                        break
                    self._changed.wait(left)
                items, self._items = self._items[: self.max_batch], self._items[self.max_batch :]
                self._sending = len(items)
            try:
                self.send(items)
            except BaseException:  # logged, and the thread goes on: it is the process's only sender
                logger.exception("%s: %d jobs not sent; the lifeline publishes them", self.name, len(items))
            finally:
                with self._lock:
                    self._sending = 0
                    self._last_send = time.monotonic()
                    self._changed.notify_all()
