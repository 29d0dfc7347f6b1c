"""Group commit: a worker process's threads hand their ledger writes to one thread, which runs
the writes that queued up meanwhile as one statement and one commit, and hands each thread its
result. A thread either waits for its own write to commit (`submit`) or leaves it to the group
(`submit_nowait`, at most `max_pending` such writes outstanding); under load the statement, the
round trip and the commit are shared.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

logger = logging.getLogger("skyport.worker")

Item = TypeVar("Item")
Result = TypeVar("Result")

# The most writes one statement takes.
DEFAULT_MAX_BATCH = 256
# How long the first write of a batch waits for others to join its statement (measured here:
# it makes the batches of a busy worker larger and PostgreSQL's work per job smaller).
DEFAULT_LINGER_S = 0.001


# The most writes left to the group by submit_nowait and not yet done; more wait for a slot.
DEFAULT_MAX_PENDING = 4 * DEFAULT_MAX_BATCH


class _Pending(Generic[Item, Result]):
    __slots__ = ("done", "error", "item", "result")

    def __init__(self, item: Item, waited_for: bool = True) -> None:
        self.item = item
        self.done: threading.Lock | None = None
        if waited_for:
            self.done = threading.Lock()  # held until the write is done: the lightest hand-off
            self.done.acquire()
        self.result: Result | None = None
        self.error: BaseException | None = None


class GroupCommit(Generic[Item, Result]):
    """`write(items)` returns one result per item, in order; it runs on the group's thread, or on
    the caller's own thread when the group is not running (before start, after stop)."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[Item]], Sequence[Result]],
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_s: float = DEFAULT_LINGER_S,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        self.name = name
        self.write = write
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queue: queue.SimpleQueue[_Pending[Item, Result] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a write is queued before the stop sentinel, or not at all
        self._unwaited = threading.BoundedSemaphore(max_pending)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Run what is queued, then stop; later writes run on their callers' threads."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None:
            thread.join(timeout_s)

    def submit(self, item: Item) -> Result:
        """Run one write with whatever else is queued; returns its result or raises its error."""
        pending: _Pending[Item, Result] = _Pending(item)
        with self._lock:
            running = self._thread is not None
            if running:
                self._queue.put(pending)
        if not running:
            return self.write([item])[0]
        pending.done.acquire()  # type: ignore[union-attr]
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def submit_nowait(self, item: Item) -> None:
        """Leave one write to the group and return; a failed write is logged, not raised."""
        self._unwaited.acquire()  # back-pressure: waits while max_pending writes are outstanding
        pending: _Pending[Item, Result] = _Pending(item, waited_for=False)
        with self._lock:
            running = self._thread is not None
            if running:
                self._queue.put(pending)
        if not running:
            self._write([pending])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            linger_until = time.monotonic() + self.linger_s
            while len(batch) < self.max_batch:
                try:
                    pending = self._queue.get(timeout=max(0.0, linger_until - time.monotonic()))
                except queue.Empty:
                    break
                if pending is None:
                    stopping = True
                    break
                batch.append(pending)
            self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[_Pending[Item, Result]]) -> None:
        try:
            results = self.write([p.item for p in batch])
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
        except BaseException as exc:  # every waiting thread gets the error, none hangs
            for pending in batch:
                pending.error = exc
            if any(p.done is None for p in batch):
                logger.error("%s: %d writes failed", self.name, len(batch), exc_info=True)
        for pending in batch:
            if pending.done is None:
                self._unwaited.release()
            else:
                pending.done.release()
