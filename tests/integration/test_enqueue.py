"""enqueue / enqueue_many against a real PostgreSQL: rows, validation, dedup keys, transactions."""

from __future__ import annotations

import importlib
import json
import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

import config
from tests.conftest import TEST_REDIS_URL
from tests.support import free_port, wait_for
from workers import EnqueueError, JobSpec, enqueue, enqueue_many, ledger
from workers.ledger import StartedAttempt

enqueue_module = importlib.import_module("workers.enqueue")  # the package exports the function


def _count(conn: psycopg.Connection, where: str = "true", params: tuple = ()) -> int:
    return conn.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()[0]


def test_enqueue_writes_a_queued_row(conn: psycopg.Connection) -> None:
    ref = enqueue("remember", ["a"])
    row = conn.execute(
        "SELECT actor, queue, state, args, kwargs, max_attempts FROM jobs WHERE id = %s", (ref.id,)
    ).fetchone()
    assert ref.created and ref.state == "queued"
    assert row == ("remember", "default", "queued", ["a"], {}, 4)  # max_retries=3 -> 4 attempts


def test_delay_and_eta_schedule_the_job(conn: psycopg.Connection) -> None:
    delayed = enqueue("remember", ["a"], delay=timedelta(days=30))
    at = datetime.now(UTC) + timedelta(hours=1)
    timed = enqueue("remember", ["b"], eta=at)
    assert delayed.state == timed.state == "scheduled"
    eta, now = conn.execute("SELECT eta, now() FROM jobs WHERE id = %s", (delayed.id,)).fetchone()
    assert timedelta(days=29, hours=23) < eta - now <= timedelta(days=30)
    assert conn.execute("SELECT eta FROM jobs WHERE id = %s", (timed.id,)).fetchone()[0] == at


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda: enqueue("no_such_actor"), "actor", "unknown actor 'no_such_actor'"),
        (lambda: enqueue(["not", "a name"]), "actor", "actor must be an actor or its name"),
        (lambda: enqueue("remember", [object()]), "args", "args must be JSON-serializable"),
        (lambda: enqueue("remember", "ab"), "args", "args must be a list or tuple"),
        (
            lambda: enqueue("remember", [], {"key": float("nan")}),
            "kwargs",
            "kwargs must be JSON-serializable",
        ),
        (lambda: enqueue("remember", [], {1: "x"}), "kwargs", "kwargs must be a dict with string keys"),
        (lambda: enqueue("remember", ["a\x00b"]), "args", "a NUL character"),
        (lambda: enqueue("remember", ["\ud800"]), "args", "a lone surrogate"),
        (lambda: enqueue("remember", [], {"key": {"\udfff": 1}}), "kwargs", "a lone surrogate"),
        (lambda: enqueue("remember", ["x" * 11_000_000]), "args", "more than 1,048,576"),
        (lambda: enqueue("remember", ["a"], delay=-1), "delay", "delay must be between 0 and"),
        (lambda: enqueue("remember", ["a"], delay=timedelta(seconds=-5)), "delay", "delay must be between"),
        (lambda: enqueue("remember", ["a"], delay=float("nan")), "delay", "delay must be between"),
        (lambda: enqueue("remember", ["a"], delay=float("inf")), "delay", "delay must be between"),
        (lambda: enqueue("remember", ["a"], delay=10**12), "delay", "delay must be between"),
        (lambda: enqueue("remember", ["a"], queue="nowhere"), "queue", "unknown queue 'nowhere'"),
        (lambda: enqueue("remember", ["a"], queue=["default"]), "queue", "unknown queue"),
        (lambda: enqueue("remember", ["a", "b"]), "args", "invalid arguments for remember"),
        (lambda: enqueue("remember", [], {"nope": 1}), "args", "invalid arguments for remember"),
        (lambda: enqueue("remember", ["a"], eta=datetime(2030, 1, 1)), "eta", "eta must be a timezone-aware"),
        (
            lambda: enqueue("remember", ["a"], eta=datetime(9999, 1, 1, tzinfo=UTC)),
            "eta",
            "eta must be within",
        ),
        (
            lambda: enqueue("remember", ["a"], dedup_window=5),
            "dedup_window",
            "dedup_window needs a dedup_key",
        ),
        (
            lambda: enqueue("remember", ["a"], dedup_key=""),
            "dedup_key",
            "dedup_key must be a non-empty string",
        ),
        (lambda: enqueue("remember", ["a"], dedup_key="k" * 2000), "dedup_key", "longer than 1024 bytes"),
        (lambda: enqueue("remember", ["a"], dedup_key="a\x00"), "dedup_key", "a NUL character"),
        (lambda: enqueue("remember", ["a"], dedup_key="\udc00"), "dedup_key", "a lone surrogate"),
        (
            lambda: enqueue("remember", ["a"], dedup_key="k", dedup_window=float("inf")),
            "dedup_window",
            "dedup_window must be between",
        ),
    ],
)
def test_invalid_input_is_refused_and_writes_nothing(
    conn: psycopg.Connection, call, field: str, message: str
) -> None:
    with pytest.raises(EnqueueError, match=message) as refused:
        call()
    assert refused.value.field == field
    assert _count(conn) == 0


def test_non_ascii_text_and_emoji_are_stored(conn: psycopg.Connection) -> None:
    ref = enqueue("remember", ["héllo 😀 \ud55c"], dedup_key="ключ-😀")
    assert conn.execute("SELECT args->>0, dedup_key FROM jobs WHERE id = %s", (ref.id,)).fetchone() == (
        "héllo 😀 \ud55c",
        "ключ-😀",
    )


def test_a_bad_job_in_a_batch_writes_nothing(conn: psycopg.Connection) -> None:
    with pytest.raises(EnqueueError):
        enqueue_many([JobSpec("remember", ["a"]), JobSpec("remember", ["b"], delay=-3)])
    assert _count(conn) == 0


def test_dedup_key_returns_the_existing_job(conn: psycopg.Connection) -> None:
    first = enqueue("remember", ["a"], dedup_key="k")
    second = enqueue("remember", ["b"], dedup_key="k")
    assert first.created and not second.created
    assert second.id == first.id
    assert _count(conn) == 1


def test_sixteen_threads_one_dedup_key_make_one_job(conn: psycopg.Connection) -> None:
    barrier = threading.Barrier(16)
    refs = []

    def go() -> None:
        with psycopg.connect(config.get().database.url) as c:
            barrier.wait()
            refs.append(enqueue("remember", ["same"], dedup_key="race", conn=c))
            c.commit()

    threads = [threading.Thread(target=go) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(refs) == 16
    assert len({r.id for r in refs}) == 1
    assert sum(r.created for r in refs) == 1
    assert _count(conn) == 1


def _finish(conn: psycopg.Connection, job_id: int) -> None:
    """Run a job to success through the ledger's own transitions (as a worker would)."""
    conn.execute("UPDATE jobs SET published_at = now() WHERE id = %s", (job_id,))
    started = ledger.job_start(conn, job_id, "test-worker", "m1")
    assert started is not None
    assert ledger.job_succeed(conn, started, "test-worker")


def test_finished_job_releases_its_key_unless_a_window_holds_it(conn: psycopg.Connection) -> None:
    plain = enqueue("remember", ["a"], dedup_key="plain")
    _finish(conn, plain.id)
    again = enqueue("remember", ["a"], dedup_key="plain")
    assert again.created and again.id != plain.id

    windowed = enqueue("remember", ["a"], dedup_key="windowed", dedup_window=1.0)
    _finish(conn, windowed.id)
    blocked = enqueue("remember", ["a"], dedup_key="windowed")
    assert not blocked.created and blocked.id == windowed.id and blocked.state == "succeeded"
    later = wait_for(
        lambda: (r := enqueue("remember", ["a"], dedup_key="windowed")).created and r,
        5,
        what="the dedup window to pass",
    )
    assert later.id != windowed.id


def test_enqueue_commits_and_rolls_back_with_the_callers_psycopg_transaction(
    conn: psycopg.Connection, database_url: str
) -> None:
    with psycopg.connect(database_url) as app:
        enqueue("remember", ["rolled back"], conn=app)
        app.rollback()
        enqueue("remember", ["committed"], conn=app)
        assert _count(conn) == 0  # not visible before the app commits
        app.commit()
    assert conn.execute("SELECT args FROM jobs").fetchall() == [(["committed"],)]


def test_enqueue_joins_sqlalchemy_connections_and_sessions(conn: psycopg.Connection) -> None:
    engine = sa.create_engine(config.get().database.sqlalchemy_url)
    try:
        with engine.connect() as c:
            enqueue("remember", ["sa rollback"], conn=c)
            c.rollback()
            enqueue("remember", ["sa commit"], conn=c)
            c.commit()
        with Session(engine) as session:
            enqueue("remember", ["session rollback"], conn=session)
            session.rollback()
            enqueue("remember", ["session commit"], conn=session)
            session.commit()
    finally:
        engine.dispose()
    args = sorted(r[0][0] for r in conn.execute("SELECT args FROM jobs").fetchall())
    assert args == ["sa commit", "session commit"]


def test_enqueue_many_keeps_the_order_and_resolves_dedup_keys(conn: psycopg.Connection) -> None:
    existing = enqueue("remember", ["old"], dedup_key="k-1")
    specs = [
        JobSpec("remember", [f"job-{i}"], dedup_key=f"k-{i}" if i % 3 == 0 else None) for i in range(1, 1001)
    ]
    specs.append(JobSpec("remember", ["dup of k-3"], dedup_key="k-3"))
    refs = enqueue_many(specs)
    assert len(refs) == len(specs)
    args = dict(conn.execute("SELECT id, args->>0 FROM jobs").fetchall())
    for i, ref in enumerate(refs[:1000], start=1):
        if i % 3 == 0:
            assert ref.created and args[ref.id] == f"job-{i}"
        else:
            assert ref.created and args[ref.id] == f"job-{i}"
    assert refs[-1].id == refs[2].id and not refs[-1].created  # same key twice in one batch
    assert _count(conn) == 1001  # 1000 new + the old one
    assert existing.id not in {r.id for r in refs}


def test_enqueue_is_fast_enough_for_a_request_path(conn: psycopg.Connection) -> None:
    enqueue("remember", ["warm-up"])
    started = time.perf_counter()
    for i in range(50):
        enqueue("remember", [str(i)], dedup_key=f"fast-{i}")
    # Sanity only (the figure lives in bench/throughput/): 50 enqueues well under 5 s.
    assert time.perf_counter() - started < 5
    assert _count(conn, "dedup_key LIKE 'fast-%%'") == 50


def test_started_attempt_is_guarded(conn: psycopg.Connection) -> None:
    ref = enqueue("remember", ["a"])
    assert ledger.job_start(conn, ref.id, "w1", "m1") == StartedAttempt(ref.id, 1, 4)
    assert ledger.job_start(conn, ref.id, "w2", "m2") is None  # running elsewhere: skip
    # the same message again (a retried statement) is the same attempt, not a second one
    assert ledger.job_start(conn, ref.id, "w1", "m1") == StartedAttempt(ref.id, 1, 4)
    assert not ledger.job_succeed(conn, StartedAttempt(ref.id, 1, 4), "w2")  # not its worker
    assert ledger.job_succeed(conn, StartedAttempt(ref.id, 1, 4), "w1")
    assert not ledger.job_succeed(conn, StartedAttempt(ref.id, 1, 4), "w1")  # already final
    assert ledger.job_start(conn, ref.id, "w1", "m3") is None


def test_batched_starts_and_successes_are_guarded_per_job(conn: psycopg.Connection) -> None:
    a, b, c = (enqueue("remember", [name]).id for name in "abc")
    ledger.job_start(conn, c, "elsewhere", "mc")  # c runs on another worker
    # Two messages for `a` in one batch (a duplicate publication): one starts, the other skips.
    started = ledger.job_start_many(conn, "w1", [(a, "ma1"), (a, "ma2"), (b, "mb"), (c, "mc2")])
    assert sorted(started.values(), key=lambda s: s.job_id) == [
        StartedAttempt(a, 1, 4),
        StartedAttempt(b, 1, 4),
    ]
    assert len(started) == 2 and "mb" in started and len({"ma1", "ma2"} & set(started)) == 1
    # Successes: only the attempts this worker runs are recorded, each once.
    recorded = ledger.job_succeed_many(
        conn, "w1", [StartedAttempt(a, 1, 4), StartedAttempt(b, 2, 4), StartedAttempt(c, 1, 4)]
    )
    assert recorded == {(a, 1)}
    states = dict(conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", ([a, b, c],)).fetchall())
    assert states == {a: "succeeded", b: "running", c: "running"}
    assert _count_attempts(conn, a) == 1 and _count_attempts(conn, b) == 0


def test_a_late_success_sharing_a_batch_with_the_rerun_is_not_recorded(conn: psycopg.Connection) -> None:
    # Attempt 1 stalls (a host cut off), the lifeline queues the job again, the same worker runs it
    # as attempt 2; both successes reach one batched write: only attempt 2 is the job's.
    job = enqueue("remember", ["rerun"]).id
    first = ledger.job_start(conn, job, "w1", "m1")
    conn.execute("UPDATE jobs SET state = 'queued' WHERE id = %s", (job,))  # as the lifeline does
    second = ledger.job_start(conn, job, "w1", "m2")
    assert first is not None and second is not None and (first.attempt, second.attempt) == (1, 2)
    assert ledger.job_succeed_many(conn, "w1", [first, second]) == {(job, 2)}
    assert conn.execute("SELECT attempt FROM job_attempts WHERE job_id = %s", (job,)).fetchall() == [(2,)]


def test_an_outcome_dates_the_attempt_from_when_its_run_began(conn: psycopg.Connection) -> None:
    # A job claimed at fetch time waits for a thread: its run began `waited_s` after its claim.
    done, failed = (enqueue("remember", [name]).id for name in ("done", "failed"))
    assert len(ledger.job_start_many(conn, "w1", [(done, "m1"), (failed, "m2")])) == 2
    claimed_at = dict(conn.execute("SELECT id, started_at FROM jobs WHERE id = ANY(%s)", ([done, failed],)))
    assert ledger.job_succeed(conn, StartedAttempt(done, 1, 4, waited_s=2.5), "w1")
    assert ledger.job_fail(
        conn, StartedAttempt(failed, 1, 4, waited_s=1.0), "w1", error="E", traceback=None, retry_in_s=None
    )
    rows = conn.execute(
        "SELECT j.id, j.started_at, a.started_at FROM jobs j JOIN job_attempts a ON a.job_id = j.id"
        " WHERE j.id = ANY(%s)",
        ([done, failed],),
    ).fetchall()
    assert {
        job: (job_started - claimed_at[job], attempt_started - claimed_at[job])
        for job, job_started, attempt_started in rows
    } == {
        done: (timedelta(seconds=2.5), timedelta(seconds=2.5)),
        failed: (timedelta(seconds=1), timedelta(seconds=1)),
    }


def test_a_long_traceback_is_stored_cut_keeping_its_head_and_its_end(conn: psycopg.Connection) -> None:
    job = enqueue("remember", ["deep"]).id
    attempt = ledger.job_start(conn, job, "w1", "m1")
    assert attempt is not None
    text = "head\n" + "frame\n" * 10_000 + "ValueError: the end\n"
    assert ledger.job_fail(conn, attempt, "w1", error="ValueError", traceback=text, retry_in_s=None)
    (stored,) = conn.execute("SELECT traceback FROM job_attempts WHERE job_id = %s", (job,)).fetchone()
    assert len(stored) < ledger.MAX_TRACEBACK_CHARS + 20 < len(text)
    assert stored.startswith("head\n") and "\n... cut ...\n" in stored and stored.endswith("the end\n")


def _count_attempts(conn: psycopg.Connection, job_id: int) -> int:
    return conn.execute("SELECT count(*) FROM job_attempts WHERE job_id = %s", (job_id,)).fetchone()[0]


def test_enqueue_outside_a_transaction_sends_the_job_to_redis_at_once(
    conn: psycopg.Connection, redis_namespace: str
) -> None:
    ref = enqueue("remember", ["now"])
    assert enqueue_module.wait_until_sent()  # it returned at the commit; its message follows
    published, message_id = conn.execute(
        "SELECT published_at IS NOT NULL, message_id FROM jobs WHERE id = %s", (ref.id,)
    ).fetchone()
    assert published and message_id
    client = redis.Redis.from_url(TEST_REDIS_URL)
    assert client.lrange(f"{redis_namespace}:default", 0, -1) == [message_id.encode()]
    message = json.loads(client.hget(f"{redis_namespace}:default.msgs", message_id))
    assert message["actor_name"] == "remember" and message["args"] == ["now"]
    assert message["options"]["job_id"] == ref.id
    # In the caller's transaction nothing is sent: the relay publishes after the commit.
    with conn.transaction():
        later = enqueue("remember", ["later"], conn=conn)
    assert conn.execute("SELECT published_at FROM jobs WHERE id = %s", (later.id,)).fetchone()[0] is None
    assert client.llen(f"{redis_namespace}:default") == 1


def test_a_send_refused_by_redis_leaves_the_job_to_the_relay(
    conn: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_URL", f"redis://127.0.0.1:{free_port()}/0")
    config.get.cache_clear()
    monkeypatch.setattr(enqueue_module, "_sending_paused_until", 0.0)
    ref = enqueue("remember", ["x"])  # no error: the job is in the ledger
    assert enqueue_module.wait_until_sent()
    assert conn.execute("SELECT state, published_at FROM jobs WHERE id = %s", (ref.id,)).fetchone() == (
        "queued",
        None,
    )
    assert enqueue_module._sending_paused_until > time.monotonic()  # the relay's job for a while
    second = enqueue("remember", ["y"])
    assert conn.execute("SELECT published_at FROM jobs WHERE id = %s", (second.id,)).fetchone()[0] is None
