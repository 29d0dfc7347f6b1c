"""The group commit of single enqueues: concurrent threads and asyncio tasks share an INSERT and
its commit (rows of one commit share their xmin), each caller gets its own job, every job is
committed and in Redis when its call returns, and dedup keys hold across a group."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import redis

import config
from tests.conftest import TEST_REDIS_URL
from workers import JobRef, enqueue, enqueue_async

enqueue_module = importlib.import_module("workers.enqueue")


@pytest.fixture
def jobs_locked(conn: psycopg.Connection) -> Iterator[threading.Event]:
    with _jobs_locked() as release:
        yield release


@contextlib.contextmanager
def _jobs_locked() -> Iterator[threading.Event]:
    """The jobs table locked against inserts until the event is set: the first caller's INSERT
    waits, and the callers that come meanwhile queue up for the next turn."""
    release = threading.Event()
    with psycopg.connect(config.get().database.url) as locker:
        locker.execute("LOCK TABLE jobs IN SHARE MODE")

        def unlock() -> None:
            release.wait(10)
            locker.commit()

        thread = threading.Thread(target=unlock)
        thread.start()
        try:
            yield release
        finally:
            release.set()
            thread.join()


def _waiting(count: int) -> None:
    deadline = time.monotonic() + 10
    while len(enqueue_module._grouped._waiting) < count:
        assert time.monotonic() < deadline, "the callers did not queue up"
        time.sleep(0.005)


def _insert_blocked(conn: psycopg.Connection) -> None:
    """Until the first caller's INSERT waits for the lock."""
    query = "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'jobs'::regclass"
    deadline = time.monotonic() + 10
    while conn.execute(query).fetchone()[0] == 0:
        assert time.monotonic() < deadline, "the first INSERT did not reach the lock"
        time.sleep(0.005)


def _commits(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT count(DISTINCT xmin::text) FROM jobs").fetchone()[0]


def _check_sent(conn: psycopg.Connection, namespace: str, refs: list[JobRef]) -> None:
    rows = conn.execute(
        "SELECT message_id FROM jobs WHERE id = ANY(%s) AND state = 'queued' AND published_at IS NOT NULL",
        ([r.id for r in refs],),
    ).fetchall()
    assert len(rows) == len(refs)
    assert enqueue_module.wait_until_sent()  # the calls returned at their commit; the sends follow
    queued = redis.Redis.from_url(TEST_REDIS_URL).lrange(f"{namespace}:default", 0, -1)
    assert sorted(queued) == sorted(m.encode() for (m,) in rows)


def test_sixteen_threads_share_one_insert_and_each_returns_its_committed_job(
    conn: psycopg.Connection, redis_namespace: str, jobs_locked: threading.Event
) -> None:
    def call(i: int) -> tuple[JobRef, bool]:
        ref = enqueue("remember", [str(i)])
        with psycopg.connect(config.get().database.url) as other:  # committed when the call returns
            seen = other.execute("SELECT args FROM jobs WHERE id = %s", (ref.id,)).fetchone()
        return ref, seen == ([str(i)],)

    with ThreadPoolExecutor(16) as pool:
        first = pool.submit(call, 0)
        _insert_blocked(conn)
        rest = [pool.submit(call, i) for i in range(1, 16)]
        _waiting(15)
        jobs_locked.set()
        results = [first.result(10), *(f.result(10) for f in rest)]
    refs = [ref for ref, _ in results]
    assert all(seen for _, seen in results)
    assert len({r.id for r in refs}) == 16 and all(r.created and r.state == "queued" for r in refs)
    assert _commits(conn) == 2  # the first alone, then the fifteen that came meanwhile together
    _check_sent(conn, redis_namespace, refs)


def test_asyncio_tasks_and_threads_share_the_group_and_a_dedup_key_makes_one_job(
    conn: psycopg.Connection, redis_namespace: str, jobs_locked: threading.Event
) -> None:
    async def main() -> list[JobRef]:
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(None, lambda: enqueue("remember", ["thread"]))
        await asyncio.to_thread(_insert_blocked, conn)
        tasks = [asyncio.ensure_future(enqueue_async("remember", [str(i)])) for i in range(8)]
        same = [asyncio.ensure_future(enqueue_async("remember", ["x"], dedup_key="once")) for _ in range(4)]
        await asyncio.to_thread(_waiting, 12)
        jobs_locked.set()
        return [await first, *await asyncio.gather(*tasks, *same)]

    refs = asyncio.run(main())
    fresh, same = refs[:9], refs[9:]
    assert len({r.id for r in fresh}) == 9 and all(r.created for r in fresh)
    assert len({r.id for r in same}) == 1 and sum(r.created for r in same) == 1
    assert _commits(conn) == 2
    _check_sent(conn, redis_namespace, [*fresh, same[0]])


def test_enqueue_async_refuses_bad_input_before_any_write(conn: psycopg.Connection) -> None:
    with pytest.raises(enqueue_module.EnqueueError) as refused:
        asyncio.run(enqueue_async("remember", ["a", "b"]))
    assert refused.value.field == "args"
    assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_a_job_postgresql_refuses_fails_its_own_call_only(
    conn: psycopg.Connection, redis_namespace: str
) -> None:
    conn.execute(
        """
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'poison refused'; END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON jobs
            FOR EACH ROW WHEN (NEW.args = '["poison"]') EXECUTE FUNCTION refuse_poison();
        """
    )

    def call(arg: str) -> JobRef | Exception:
        try:
            return enqueue("remember", [arg])
        except Exception as exc:
            return exc

    with _jobs_locked() as release, ThreadPoolExecutor(8) as pool:
        first = pool.submit(call, "first")
        _insert_blocked(conn)
        rest = [pool.submit(call, arg) for arg in ("a", "poison", "b", "c")]
        _waiting(4)
        release.set()
        results = [first.result(10), *(f.result(10) for f in rest)]
    refused = results[2]
    assert isinstance(refused, psycopg.Error) and "poison refused" in str(refused)
    fine = [r for r in results if isinstance(r, JobRef)]
    assert len(fine) == 4 and len({r.id for r in fine}) == 4
    args = conn.execute("SELECT args->>0 FROM jobs ORDER BY id").fetchall()
    assert sorted(a for (a,) in args) == ["a", "b", "c", "first"]  # each once: none written twice
    _check_sent(conn, redis_namespace, fine)
