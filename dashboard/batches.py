"""Requests of the web process's event loop sharing their database writes (the webhooks' intake).

Each `submit` queues its item and waits for its own result. At most `writers` batches run at once,
each in a thread of the batcher's executor, each taking everything queued meanwhile (at most
`max_batch` items). Idle, a request's write starts at once, as a batch of one; busy, the requests
that arrived during a write go together in the next one: one thread hand-off, one transaction and
one statement per batch instead of one per request. (workers/group_commit.py is the same idea for a
worker's threads; this one is for coroutines, which must not block the loop while they wait.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# Batches one batcher runs at once (each holds a pooled connection while it runs).
DEFAULT_WRITERS = 4
# The most items one batch takes.
DEFAULT_MAX_BATCH = 256


class LoopBatcher(Generic[Item, Result]):
    """`write(items)` runs in `executor` and returns, for each item in order, its result or the
    exception its caller gets (so that one item's failure is that caller's alone); when `write`
    raises, or returns a list of another length, every caller of the batch gets an error.
    One batcher serves one event loop."""

    def __init__(
        self,
        write: Callable[[list[Item]], Sequence[Result | BaseException]],
        executor: Executor,
        *,
        writers: int = DEFAULT_WRITERS,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> None:
        self.write = write
        self.executor = executor
        self.writers = writers
        self.max_batch = max_batch
        self._pending: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._running = 0

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        self._start_batches(loop)
        return await future

    def _start_batches(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._running < self.writers and self._pending:
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            self._running += 1
            done = loop.run_in_executor(self.executor, self.write, [item for item, _ in batch])
            done.add_done_callback(partial(self._finish, loop, batch))

    def _finish(
        self,
        loop: asyncio.AbstractEventLoop,
        batch: list[tuple[Item, asyncio.Future[Result]]],
        done: asyncio.Future[Sequence[Result | BaseException]],
    ) -> None:
        self._running -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        results: Sequence[Result | BaseException] = [error] * len(batch) if error else done.result()
        if len(results) != len(batch):  # a broken write: every caller still gets an answer
            mismatch = RuntimeError(f"batch write returned {len(results)} results for {len(batch)} items")
            results = [mismatch] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its request went away (client disconnected): the write stands
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._start_batches(loop)
