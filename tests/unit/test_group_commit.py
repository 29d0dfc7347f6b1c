"""GroupCommit: threads' writes run in shared batches, each thread gets its own result or error."""

from __future__ import annotations

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
