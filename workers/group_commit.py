"""Group commit: a process's threads (and asyncio tasks) share their writes, one statement and one
commit for the writes that queued up meanwhile, and each caller gets its own result.

Two ways to run it. Started (`start()`), the writes go to the group's own thread, which lingers
`linger_s` for others to join: the worker's ledger writes, where a thread may also leave its write
to the group (`submit_nowait`, at most `max_pending` outstanding). Not started, the callers take
turns (`submit`, `submit_async`): a caller that finds no write in progress runs its own at once, on
its own thread, with no hand-off and no wait; the callers that arrive meanwhile queue up, and when
the write is done the first of them runs all of theirs as the next one, after waiting up to
`linger_s` for as many callers as the last write had (steady concurrent callers then share every
write, not every other one). A lone caller pays nothing for the group; concurrent callers share a
statement and a commit (`enqueue`'s rows).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

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
    __slots__ = ("done", "error", "future", "item", "leads", "result")

    def __init__(self, item: Item, waited_for: bool = True) -> None:
        self.item = item
        self.done: threading.Lock | None = None
        if waited_for:
            self.done = threading.Lock()  # held until the write is done: the lightest hand-off
            self.done.acquire()
        self.future: asyncio.Future[None] | None = None  # an asyncio caller's, set when done
        self.leads = False  # woken to run the next write (a thread's turn)
        self.result: Result | None = None
        self.error: BaseException | None = None

    def wake(self, leads: bool = False) -> None:
        """The write is done (or, with `leads`, this thread runs the next one)."""
        self.leads = leads
        if self.future is not None:
            with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
                self.future.get_loop().call_soon_threadsafe(_resolve, self.future)
        elif self.done is not None:
            self.done.release()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # a cancelled caller's write still runs; nobody reads its result
        future.set_result(None)


class GroupCommit(Generic[Item, Result]):
    """`write(items)` returns one result per item, in order; it runs on the group's thread, or,
    when the group is not running (not started, stopped), on the thread of the caller whose turn
    it is. `then(items, results)`, if given, runs after the write on the same thread, before the
    callers return, while the next write may already run (an enqueue's send to the broker)."""

    def __init__(
        self,
        name: str,
        write: Callable[[list[Item]], Sequence[Result]],
        max_batch: int = DEFAULT_MAX_BATCH,
        linger_s: float = DEFAULT_LINGER_S,
        max_pending: int = DEFAULT_MAX_PENDING,
        then: Callable[[list[Item], list[Result]], Any] | None = None,
    ) -> None:
        self.name = name
        self.write = write
        self.then = then
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queue: queue.SimpleQueue[_Pending[Item, Result] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a write is queued before the stop sentinel, or not at all
        self._unwaited = threading.BoundedSemaphore(max_pending)
        # Callers taking turns (the group not running): whether a write is in progress, and the
        # callers waiting for the next one.
        self._writing = False
        self._waiting: deque[_Pending[Item, Result]] = deque()
        self._arrived = threading.Condition(self._lock)
        self._last_turn = 1  # the writes of the last turn
        _groups.add(self)

    def _after_fork(self) -> None:
        """In a forked child: no writer thread and no caller came along; a turn in progress in the
        parent (or its lock held) must not keep the child's callers waiting for ever."""
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._thread = None
        self._queue = queue.SimpleQueue()
        self._writing = False
        self._waiting.clear()

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
            leads = not running and self._take_turn(pending)
        if not leads:
            pending.done.acquire()  # type: ignore[union-attr]
        if leads or pending.leads:
            self._lead(pending)
        return _outcome(pending)

    async def submit_async(self, item: Item) -> Result:
        """`submit` for a coroutine: the event loop is never blocked; a write that falls to this
        caller runs in the loop's default executor."""
        loop = asyncio.get_running_loop()
        if self._thread is not None:
            return await loop.run_in_executor(None, self.submit, item)
        pending: _Pending[Item, Result] = _Pending(item, waited_for=False)
        pending.future = loop.create_future()
        with self._lock:
            leads = self._take_turn(pending)
        if leads:  # not awaited: the turn goes on even if this caller is cancelled
            _ = loop.run_in_executor(None, self._lead, pending)
        await pending.future
        return _outcome(pending)

    def _take_turn(self, pending: _Pending[Item, Result]) -> bool:
        """Under the lock: True when no write is in progress (the caller runs its own now);
        else the caller waits for the next one."""
        if self._writing:
            self._waiting.append(pending)
            self._arrived.notify()
            return False
        self._writing = True
        return True

    def _lead(self, own: _Pending[Item, Result]) -> None:
        """Run `own` write with those of every caller waiting, then hand the next turn to the
        first caller that came meanwhile (or end the turns)."""
        with self._lock:
            self._gather()
            batch = [own]
            while self._waiting and len(batch) < self.max_batch:
                batch.append(self._waiting.popleft())
            self._last_turn = len(batch)
        results = self._write(batch, wake=False)
        with self._lock:
            if self._waiting:
                self._hand_turn(self._waiting.popleft())
            else:
                self._writing = False
        self._then(batch, results)
        for pending in batch:
            if pending is not own or own.future is not None:
                pending.wake()

    def _gather(self) -> None:
        """Under the lock, before a turn's write: after a turn of several writes, wait up to
        `linger_s` for as many callers (those of the last turn coming back with their next
        write), so that steady concurrent callers share every write instead of every other one.
        A lone caller (the last turn was one write) never waits."""
        deadline = time.monotonic() + self.linger_s
        while len(self._waiting) + 1 < min(self._last_turn, self.max_batch):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._arrived.wait(left)

    def _hand_turn(self, pending: _Pending[Item, Result]) -> None:
        """The next write is this caller's: a thread runs it itself; a coroutine's runs in its
        loop's executor (on a thread of its own if that loop is gone)."""
        if pending.future is None:
            pending.wake(leads=True)
            return
        loop = pending.future.get_loop()
        try:
            loop.call_soon_threadsafe(loop.run_in_executor, None, self._lead, pending)
        except RuntimeError:
            threading.Thread(target=self._lead, args=(pending,), name=self.name, daemon=True).start()

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

    def _write(self, batch: list[_Pending[Item, Result]], wake: bool = True) -> list[Result] | None:
        results = None
        try:
            results = list(self.write([p.item for p in batch]))
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
        except BaseException as exc:  # every waiting thread gets the error, none hangs
            results = None
            for pending in batch:
                pending.error = exc
            if any(p.done is None and p.future is None for p in batch):
                logger.error("%s: %d writes failed", self.name, len(batch), exc_info=True)
        if wake:
            self._then(batch, results)
            for pending in batch:
                if pending.done is None and pending.future is None:
                    self._unwaited.release()
                else:
                    pending.wake()
        return results

    def _then(self, batch: list[_Pending[Item, Result]], results: list[Result] | None) -> None:
        if self.then is None or results is None:
            return
        try:
            self.then([p.item for p in batch], results)
        except Exception:  # the writes are done; what follows them must not undo their results
            logger.exception("%s: after %d writes", self.name, len(batch))


_groups: weakref.WeakSet[GroupCommit[Any, Any]] = weakref.WeakSet()


def _forget_parents_turns() -> None:
    for group in list(_groups):
        group._after_fork()


os.register_at_fork(after_in_child=_forget_parents_turns)


def _outcome(pending: _Pending[Any, Result]) -> Result:
    if pending.error is not None:
        raise pending.error
    return pending.result  # type: ignore[return-value]
