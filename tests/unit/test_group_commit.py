"""GroupCommit: threads' writes run in shared batches, each thread gets its own result or error."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from workers.group_commit import GroupCommit


def test_concurrent_writes_share_batches_and_get_their_own_results() -> None:
    batches: list[list[int]] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        if not batches:
            release.wait(5)  # hold the first batch so that the others queue up meanwhile
        batches.append(items)
        return [i * 10 for i in items]

    group = GroupCommit("test-group", write, max_batch=8)
    group.start()
    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(group.submit, i) for i in range(40)]
        release.set()
        assert [f.result(5) for f in futures] == [i * 10 for i in range(40)]
    group.stop()
    assert sorted(i for batch in batches for i in batch) == list(range(40))  # each written once
    assert max(len(b) for b in batches) == 8  # batches formed, capped at max_batch
    assert len(batches) < 40


def test_an_error_reaches_every_writer_of_its_batch_and_the_group_goes_on() -> None:
    def write(items: list[int]) -> list[int]:
        if 13 in items:
            raise RuntimeError("unlucky batch")
        return items

    group = GroupCommit("test-group", write)
    group.start()
    with pytest.raises(RuntimeError, match="unlucky"):
        group.submit(13)
    assert group.submit(7) == 7
    group.stop()


def test_writes_run_on_the_callers_thread_when_the_group_is_not_running() -> None:
    threads: list[str] = []

    def write(items: list[str]) -> list[str]:
        threads.append(threading.current_thread().name)
        return items

    group = GroupCommit("test-group", write)
    assert group.submit("before") == "before"
    group.start()
    assert group.submit("during") == "during"
    group.stop()
    assert group.submit("after") == "after"
    me = threading.current_thread().name
    assert threads == [me, "test-group", me]


def test_unwaited_writes_are_bounded_drained_at_stop_and_their_errors_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[int] = []
    gate = threading.Event()

    def write(items: list[int]) -> list[None]:
        gate.wait(5)
        if 13 in items:
            raise RuntimeError("unlucky batch")
        written.extend(items)
        return [None] * len(items)

    group = GroupCommit("test-group", write, max_batch=2, max_pending=3)
    group.start()
    for i in range(3):
        group.submit_nowait(i)  # returns at once: the writer is held
    fourth = threading.Thread(target=group.submit_nowait, args=(3,))
    fourth.start()
    fourth.join(0.2)
    assert fourth.is_alive()  # three outstanding: the fourth waits for a slot
    gate.set()
    fourth.join(5)
    deadline = time.monotonic() + 5
    while len(written) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    group.submit_nowait(13)  # alone in its batch
    group.stop()  # runs what is queued
    assert sorted(written) == [0, 1, 2, 3]
    assert "test-group: 1 writes failed" in caplog.text


def test_callers_take_turns_when_the_group_is_not_started() -> None:
    batches: list[tuple[str, list[int]]] = []
    first_running, release = threading.Event(), threading.Event()
    sent: list[int] = []

    def write(items: list[int]) -> list[int]:
        if not batches:
            first_running.set()
            release.wait(5)  # the others arrive while the first write runs
        batches.append((threading.current_thread().name, items))
        return [i * 10 for i in items]

    group = GroupCommit("test-group", write, max_batch=8, then=lambda items, results: sent.extend(results))
    with ThreadPoolExecutor(17, thread_name_prefix="caller") as pool:
        first = pool.submit(group.submit, 0)
        assert first_running.wait(5)
        rest = [pool.submit(group.submit, i) for i in range(1, 17)]
        deadline = time.monotonic() + 5
        while len(group._waiting) < 16 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(group._waiting) == 16  # all queued behind the first write
        release.set()
        assert first.result(5) == 0 and [f.result(5) for f in rest] == [i * 10 for i in range(1, 17)]
    assert batches[0] == (batches[0][0], [0]) and batches[0][0].startswith(
        "caller"
    )  # the caller's own thread
    assert [len(items) for _, items in batches] == [1, 8, 8]  # the waiting callers, in turns of max_batch
    assert sorted(sent) == [
        i * 10 for i in range(17)
    ]  # `then` ran for every write before its callers returned


def test_coroutines_share_the_turns_with_threads_and_a_cancelled_one_stops_nothing() -> None:
    batches: list[list[str]] = []
    first_running, release = threading.Event(), threading.Event()

    def write(items: list[str]) -> list[str]:
        if not batches:
            first_running.set()
            release.wait(5)
        batches.append(items)
        if "bad" in items:
            raise RuntimeError("refused")
        return [i.upper() for i in items]

    group = GroupCommit("test-group", write)

    async def main() -> list[object]:
        thread = asyncio.get_running_loop().run_in_executor(None, group.submit, "thread")
        await asyncio.to_thread(first_running.wait, 5)
        tasks = [asyncio.ensure_future(group.submit_async(name)) for name in ("a", "b", "gone")]
        while len(group._waiting) < 3:
            await asyncio.sleep(0.005)
        tasks[2].cancel()  # its write still runs; the turns go on
        release.set()
        done = await asyncio.gather(thread, *tasks, return_exceptions=True)
        with pytest.raises(RuntimeError, match="refused"):
            await group.submit_async("bad")
        return [*done, await group.submit_async("after")]

    thread_result, a, b, gone, after = asyncio.run(main())
    assert (thread_result, a, b, after) == ("THREAD", "A", "B", "AFTER")
    assert isinstance(gone, asyncio.CancelledError)
    assert batches == [["thread"], ["a", "b", "gone"], ["bad"], ["after"]]


def test_a_forked_child_does_not_wait_for_a_turn_its_parent_was_taking() -> None:
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        release.wait(5)
        return items

    group = GroupCommit("test-group", write)
    busy = threading.Thread(target=group.submit, args=(1,))
    busy.start()  # the parent's turn is in progress while it forks
    deadline = time.monotonic() + 5
    while not group._writing and time.monotonic() < deadline:
        time.sleep(0.005)
    pid = os.fork()
    if pid == 0:  # the child: its own write runs at once (killed by the alarm if it waits instead)
        signal.alarm(5)
        release.set()
        os._exit(0 if group.submit(2) == 2 else 1)
    release.set()
    busy.join(5)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_after_a_turn_of_several_the_next_waits_for_as_many_callers_and_a_lone_one_never_waits() -> None:
    batches: list[list[int]] = []
    hold = threading.Event()

    def write(items: list[int]) -> list[int]:
        if items == [0]:
            hold.wait(5)  # callers 1..4 queue up behind the first write
        batches.append(items)
        return items

    group = GroupCommit("test-group", write, linger_s=1.0)
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(group.submit, 0)
        deadline = time.monotonic() + 5
        while not group._writing and time.monotonic() < deadline:
            time.sleep(0.005)
        burst = [pool.submit(group.submit, i) for i in range(1, 5)]
        while len(group._waiting) < 4 and time.monotonic() < deadline:
            time.sleep(0.005)
        hold.set()
        assert [f.result(5) for f in (first, *burst)] == [0, 1, 2, 3, 4]
        # The last turn wrote four: the next caller waits (up to 1 s) for three more to join it.
        started = time.monotonic()
        late = [pool.submit(group.submit, 5)]
        while not group._writing and time.monotonic() < deadline:
            time.sleep(0.005)
        late += [pool.submit(group.submit, i) for i in (6, 7, 8)]
        assert [f.result(5) for f in late] == [5, 6, 7, 8]
        assert time.monotonic() - started < 0.9
    assert group.submit(9) == 9 and group.submit(10) == 10  # the first waits at most 1 s, alone
    assert batches[:3] == [[0], [1, 2, 3, 4], [5, 6, 7, 8]] and batches[3:] == [[9], [10]]
    lone = time.monotonic()
    assert group.submit(11) == 11  # the last turn was one write: no wait at all
    assert time.monotonic() - lone < 0.5
