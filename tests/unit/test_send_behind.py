"""The sender behind `enqueue`'s commit: everything put is sent, in order, and `flush` waits for it."""

from __future__ import annotations

import os
import threading
import time

from tests.support import wait_for
from workers.send_behind import SendBehind


def test_items_put_from_many_threads_are_all_sent_once_each_thread_in_order() -> None:
    sent: list[tuple[int, int]] = []
    calls: list[int] = []

    def send(items: list[tuple[int, int]]) -> None:
        calls.append(len(items))
        time.sleep(0.002)  # a Redis round trip: puts meanwhile share the next call
        sent.extend(items)

    sender: SendBehind[tuple[int, int]] = SendBehind("test-send", send)

    def put_many(thread: int) -> None:
        for n in range(200):
            sender.put([(thread, n)])

    threads = [threading.Thread(target=put_many, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sender.flush(5.0)
    assert sorted(sent) == [(t, n) for t in range(8) for n in range(200)]
    for thread in range(8):
        assert [n for t, n in sent if t == thread] == list(range(200))
    assert len(calls) < 1600  # concurrent puts shared calls


def test_flush_waits_for_the_send_in_progress_and_says_when_it_gave_up() -> None:
    release = threading.Event()
    sent: list[int] = []

    def send(items: list[int]) -> None:
        release.wait(5)
        sent.extend(items)

    sender: SendBehind[int] = SendBehind("test-send", send)
    sender.put([1, 2])
    assert not sender.flush(0.05)
    release.set()
    assert sender.flush(5.0)
    assert sent == [1, 2]


def test_a_failing_send_is_logged_and_the_next_items_still_go(caplog) -> None:
    sent: list[int] = []

    def send(items: list[int]) -> None:
        if 0 in items:
            raise RuntimeError("broker gone")
        sent.extend(items)

    sender: SendBehind[int] = SendBehind("test-send", send)
    sender.put([0])
    assert sender.flush(5.0)
    sender.put([1])
    assert sender.flush(5.0)
    assert sent == [1]
    assert "1 jobs not sent" in caplog.text


def test_a_forked_child_sends_its_own_items_not_its_parents() -> None:
    read_end, write_end = os.pipe()
    hold = threading.Event()

    def send(items: list[int]) -> None:
        hold.wait(5)
        os.write(write_end, b"".join(b"%d;" % i for i in items))

    sender: SendBehind[int] = SendBehind("test-send", send)
    sender.put([1])  # the parent's, held in its sender thread while the child forks
    pid = os.fork()
    if pid == 0:  # the child: no parent thread here; its own put gets a thread of its own
        hold.set()
        sender.put([2])
        os._exit(0 if sender.flush(5.0) else 1)
    _, status = os.waitpid(pid, 0)
    hold.set()
    assert sender.flush(5.0)
    os.close(write_end)
    written = b""
    while chunk := os.read(read_end, 100):
        written += chunk
    os.close(read_end)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sorted(written.split(b";")[:-1]) == [b"1", b"2"]


def _enqueue_and_end(write_end: int) -> None:
    """A multiprocessing child's work: it puts and ends at once (no atexit in such a child)."""

    def send(items: list[int]) -> None:
        os.write(write_end, b"".join(b"%d;" % i for i in items))

    sender: SendBehind[int] = SendBehind("test-send", send, linger_s=0.2)
    sender.put([7, 8])


def test_a_multiprocessing_child_sends_what_is_left_before_it_ends() -> None:
    import multiprocessing

    read_end, write_end = os.pipe()
    child = multiprocessing.get_context("fork").Process(target=_enqueue_and_end, args=(write_end,))
    child.start()
    child.join(10)
    os.close(write_end)
    written = b""
    while chunk := os.read(read_end, 100):
        written += chunk
    os.close(read_end)
    assert child.exitcode == 0
    assert written == b"7;8;"  # sent while the child ended, not lost with its thread


def test_a_sender_thread_that_died_is_replaced_at_the_next_put() -> None:
    sent: list[int] = []

    def send(items: list[int]) -> None:
        sent.extend(items)

    sender: SendBehind[int] = SendBehind("test-send", send)
    sender.put([1])
    assert sender.flush(5.0)
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    sender._thread = dead  # as if the thread had ended
    sender.put([2])
    assert sender.flush(5.0)
    assert sent == [1, 2]


def test_a_first_item_goes_at_once_and_a_steady_stream_goes_in_few_sends() -> None:
    calls: list[list[int]] = []
    sent_at: list[float] = []

    def send(items: list[int]) -> None:
        calls.append(items)
        sent_at.append(time.monotonic())

    sender: SendBehind[int] = SendBehind("test-send", send, linger_s=5.0, pause_s=0.05)
    put_at = time.monotonic()
    sender.put([0])
    wait_for(lambda: calls, 2.0, interval_s=0.005, what="the lone item's send")
    assert sent_at[0] - put_at < 1.0  # nothing was sent before it: no linger of 5 s
    for n in range(1, 101):  # one item a millisecond: no pause of 50 ms between them
        sender.put([n])
        time.sleep(0.001)
    assert sender.flush(5.0)
    assert [n for items in calls for n in items] == list(range(101))
    assert len(calls) <= 4, [len(items) for items in calls]


def test_flush_sends_at_once_instead_of_lingering() -> None:
    sent: list[int] = []
    sender: SendBehind[int] = SendBehind("test-send", sent.extend, linger_s=5.0, pause_s=5.0)
    started = time.monotonic()
    sender.put([1, 2])
    assert sender.flush(4.0)
    assert time.monotonic() - started < 1.0
    assert sent == [1, 2]


def test_an_item_after_a_quiet_spell_goes_at_once_and_the_next_one_waits_for_company() -> None:
    sent_at: list[float] = []
    sender: SendBehind[int] = SendBehind(
        "test-send", lambda items: sent_at.append(time.monotonic()), linger_s=1.0, pause_s=0.5
    )
    put_at = time.monotonic()
    sender.put([1])  # nothing sent for longer than the linger: lingering would only delay it
    wait_for(lambda: sent_at, 2.0, interval_s=0.005, what="the first send")
    assert sent_at[0] - put_at < 0.25
    put_at = time.monotonic()
    sender.put([2])  # right after a send: it waits the pause for others to come
    wait_for(lambda: len(sent_at) == 2, 3.0, interval_s=0.005, what="the second send")
    assert sent_at[1] - put_at >= 0.45
