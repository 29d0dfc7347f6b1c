"""The claim under flow control and the relay's flow pass on a real database: jobs over a limit
wait for a slot without spending an attempt, and go again when the limit allows it."""

from __future__ import annotations

import dataclasses
import threading
import time

import dramatiq
import psycopg

import tests.actors  # noqa: F401 - the flow actors
from db import pool
from workers import enqueue, flow, flow_claim, ledger
from workers.flow_gate import FlowGate

KNOWN = {"default", "flow"}


def _fetched(conn: psycopg.Connection, actor_name: str, *args: object) -> flow_claim.Fetched:
    ref = enqueue(actor_name, list(args))
    message_id = conn.execute("SELECT message_id FROM jobs WHERE id = %s", (ref.id,)).fetchone()[0]
    actor = dramatiq.get_broker().get_actor(actor_name)
    return flow_claim.Fetched(ref.id, message_id, actor.queue_name, actor, list(args), {}, None)


def _gate(conn: psycopg.Connection) -> FlowGate:
    """A worker process's flow gate, its rules read now (no watcher thread)."""
    gate = FlowGate()
    gate.broker = dramatiq.get_broker()
    gate.watcher.rules = flow.read_rules(conn)
    return gate


def test_jobs_over_a_cleared_queue_limit_go_again(conn: psycopg.Connection) -> None:
    flow.set_limit(conn, "queue", "default", 1, "ops:ann", KNOWN)
    jobs = [_fetched(conn, "remember", f"k{i}") for i in range(3)]
    outcome = flow_claim.claim(conn, "w1", jobs, flow.read_rules(conn))
    assert len(outcome.started) == 1 and sorted(outcome.parked.values()) == ["slot", "slot"]
    assert conn.execute("SELECT sum(attempts) FROM jobs").fetchone()[0] == 1  # no attempt spent
    flow.set_limit(conn, "queue", "default", None, "ops:ann", KNOWN)  # ops clear the limit
    _gate(conn).release_slots(conn)
    waiting = conn.execute("SELECT count(*) FROM jobs WHERE waiting_for IS NOT NULL").fetchone()[0]
    assert waiting == 0, "jobs parked for a slot of a limit that is gone must go again"


def test_a_key_function_that_fails_at_the_claim_does_not_stop_the_claim(conn: psycopg.Connection) -> None:
    """A deploy changed the actor's arguments or its key function: jobs enqueued before still
    start under the limit (not a claim that raises for ever, the consumer fetching them again)."""
    job = _fetched(conn, "per_shipment", "ship-1", 0.0)
    changed = flow_claim.Fetched(job.job_id, job.message_id, job.queue, job.actor, [], {}, None)
    outcome = flow_claim.claim(conn, "w1", [changed], flow.read_rules(conn))
    assert list(outcome.started) == [job.message_id] and outcome.parked == {}


def test_a_job_given_back_as_paused_while_a_resume_commits_is_not_left_paused(
    database_url: str, conn: psycopg.Connection
) -> None:
    """A worker gives back a claimed job of a paused queue (its thread would have begun it) while
    ops resume the queue: the job must not stay parked as paused after the resume."""
    job = _fetched(conn, "remember", "given-back")
    started = ledger.job_start_many(conn, "w1", [(job.job_id, job.message_id)])[job.message_id]
    flow.pause(conn, "queue", "default", "ops:ann", None, KNOWN)
    with psycopg.connect(database_url) as holder:  # holds the job's row: the give-back waits on it
        holder.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job.job_id,))

        def give_back() -> None:
            with pool.connection() as c:
                ledger.job_release_unstarted(c, "w1", [started], paused=True)

        def resume() -> None:
            with psycopg.connect(database_url, autocommit=True) as c, c.transaction():
                flow.resume(c, "queue", "default", "ops:ann", KNOWN)

        giving_back = threading.Thread(target=give_back)
        giving_back.start()
        time.sleep(0.3)  # its update waits for the row, the pause seen
        resuming = threading.Thread(target=resume)
        resuming.start()
        resuming.join(0.5)  # a resume that does not wait for the give-back ends meanwhile
        holder.commit()
    giving_back.join(5)
    resuming.join(5)
    row = conn.execute("SELECT state, waiting_for FROM jobs WHERE id = %s", (job.job_id,)).fetchone()
    assert row == ("queued", None), "a job parked as paused after its queue's resume waits for ever"


def test_reserved_starts_that_waited_in_the_broker_past_their_period_reserve_again(
    conn: psycopg.Connection,
) -> None:
    """rated: 20/s. Messages published at their reserved starts that then waited in the broker for
    a busy fleet (2 s) must not all start at once when a worker takes them; on time, they do."""
    late = [
        dataclasses.replace(_fetched(conn, "rated", f"late-{i}"), reserved_at=time.time() - 2.0)
        for i in range(4)
    ]
    outcome = flow_claim.claim(conn, "w1", late, flow.read_rules(conn))
    assert len(outcome.started) == 1 and list(outcome.parked.values()) == ["rate"] * 3
    on_time = [
        dataclasses.replace(_fetched(conn, "rated", f"due-{i}"), reserved_at=time.time()) for i in range(2)
    ]
    assert len(flow_claim.claim(conn, "w1", on_time, flow.read_rules(conn)).started) == 2
