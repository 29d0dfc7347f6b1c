"""LoopBatcher: coroutines' writes share batches, each caller gets its own result or error."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from dashboard.batches import LoopBatcher


def test_requests_arriving_during_a_write_share_the_next_batch_and_get_their_own_results() -> None:
    batches: list[list[int]] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int | BaseException]:
        if not batches:
            release.wait(5)  # hold the first batch: the other requests queue up meanwhile
        batches.append(items)
        return [ValueError(f"odd {i}") if i % 7 == 3 else i * 10 for i in items]

    async def main() -> list[object]:
        batcher = LoopBatcher(write, ThreadPoolExecutor(1), writers=1, max_batch=16)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # the first batch is running, alone
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 40)]
        await asyncio.sleep(0.05)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    results = asyncio.run(main())
    for i, result in enumerate(results):
        if i % 7 == 3:
            assert isinstance(result, ValueError) and str(result) == f"odd {i}"
        else:
            assert result == i * 10
    assert batches[0] == [0] and [len(b) for b in batches[1:]] == [16, 16, 7]  # max_batch respected
    assert sorted(i for batch in batches for i in batch) == list(range(40))  # each written once


def test_a_failing_write_fails_every_caller_of_its_batch_and_the_next_batch_still_runs() -> None:
    def write(items: list[int]) -> list[int]:
        if 1 in items:
            raise RuntimeError("database away")
        return items

    async def main() -> tuple[list[object], int]:
        batcher = LoopBatcher(write, ThreadPoolExecutor(2), writers=2)
        failed = await asyncio.gather(batcher.submit(1), return_exceptions=True)
        return failed, await batcher.submit(2)

    failed, later = asyncio.run(main())
    assert isinstance(failed[0], RuntimeError) and later == 2


def test_idle_requests_run_at_once_up_to_the_writers() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(3, timeout=5)

    def write(items: list[int]) -> list[int]:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        gate.wait()  # three writes at once, or this times out
        with lock:
            running -= 1
        return items

    async def main() -> list[int]:
        batcher = LoopBatcher(write, ThreadPoolExecutor(3), writers=3)
        return await asyncio.gather(*(batcher.submit(i) for i in range(3)))

    assert asyncio.run(main()) == [0, 1, 2] and peak == 3


@pytest.mark.parametrize("writers", [1, 4])
def test_many_requests_all_answered(writers: int) -> None:
    async def main() -> list[int]:
        executor = ThreadPoolExecutor(writers)
        batcher = LoopBatcher(lambda items: [i + 1 for i in items], executor, writers=writers)
        return await asyncio.gather(*(batcher.submit(i) for i in range(500)))

    assert asyncio.run(main()) == [i + 1 for i in range(500)]


def test_a_write_returning_the_wrong_number_of_results_still_answers_every_caller() -> None:
    async def main() -> list[object]:
        batcher = LoopBatcher(lambda items: items[:-1], ThreadPoolExecutor(1), writers=1)
        calls = asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        return await asyncio.wait_for(calls, 5)  # none left waiting

    answers = asyncio.run(main())
    assert all(isinstance(a, RuntimeError) and "results for" in str(a) for a in answers)
