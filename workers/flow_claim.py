"""Claims under flow control, and the release of jobs that waited for a slot.

A fetched message whose queue or actor is paused, or that a concurrency or rate limit governs,
is claimed here instead of by the plain batch claim (workers/middleware.py):
- a paused job is parked (`waiting_for = 'paused'`) off the broker;
- the others start in one transaction sent as one simple query (one round trip): the concurrency
  limits they fall under are locked (transaction advisory locks, taken in a fixed order), the
  jobs start (queued -> running, as in the plain claim), then per limit the running jobs are
  counted and this claim's starts beyond the limit undone (`slot`). Slots are the ledger's
  running rows, so a killed worker's slots come back when the lifeline takes its jobs back, and
  no slot can leak;
- then a rate-limited job reserves its start (flow.rate_reserve): due now, it runs; else it is
  undone (`rate`) with its reserved time as eta, and the relay publishes it then, marked with
  the time, so that its claim does not reserve again; unless the message waited in the broker
  longer than the rate's period and than a second (a busy fleet): late starts taken together
  would bunch.
No held job spends an attempt. The relay's flow pass (`release_slots`) gives slot-waiting jobs
back to the relay, best priority first, as slots free up; a resume gives back the paused ones.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
import psycopg

from workers import flow, flow_sql, ledger, ledger_sql

logger = logging.getLogger("skyport.flow")

# A reserved start this close is taken now rather than parked (the relay's publication of a
# parked job costs more than this).
DEFAULT_RATE_SLACK_S = 0.02
# The key of a job whose concurrency_key fails at the claim (it ran at the enqueue: a deploy changed
# the actor since); such jobs share it, and run under the limit rather than block the queue.
UNKEYED = "(key failed)"
# A message published at its reserved rate start and taken later than the rate's period, or than
# this (hosts' clocks differ by a little; an idle consumer polls about once a second), reserves again.
DEFAULT_RESERVED_LATE_S = 1.0
# Sorts before any other statement of the claim: the advisory locks of the limits.
LOCK_SCOPE = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


@dataclass(frozen=True)
class Fetched:
    """A fetched message's job, as the controlled claim needs it."""

    job_id: int
    message_id: str
    queue: str
    actor: dramatiq.Actor
    args: list[Any]
    kwargs: dict[str, Any]
    reserved_at: float | None  # published at its reserved rate start then (epoch seconds)

    def on_reserved_time(self, rate: flow.Rate) -> bool:
        """Whether it comes within the rate's period (at least DEFAULT_RESERVED_LATE_S) of its
        reserved start: it starts without reserving again (later, it reserves again)."""
        late_s = max(rate.period_s, DEFAULT_RESERVED_LATE_S)
        return self.reserved_at is not None and time.time() - self.reserved_at <= late_s

    @functools.cached_property
    def key(self) -> str | None:
        try:
            return flow.flow_key(self.actor, self.args, self.kwargs)
        except Exception as exc:  # the arguments or the key function changed since the enqueue
            logger.warning("job %s: its concurrency_key fails (%s); key %r", self.job_id, exc, UNKEYED)
            return UNKEYED


@dataclass
class Outcome:
    """What the controlled claim did: started attempts by message id; parked jobs; the seconds
    until the earliest reserved start (None: none was parked for a rate)."""

    started: dict[str, ledger.StartedAttempt]
    parked: dict[int, str]
    next_due_s: float | None = None


@dataclass(frozen=True)
class Scope:
    """A concurrency limit a job falls under: an actor's (per key when `keyed`) or a queue's."""

    name: str  # the advisory lock's name: actor:<name>[:<key>] or queue:<name>
    limit: int
    actor: str | None = None
    key: str | None = None
    keyed: bool = False
    queue: str | None = None


def claim(conn: psycopg.Connection, worker_id: str, fetched: list[Fetched], rules: flow.Rules) -> Outcome:
    """Claim, park or start the jobs of `fetched` (see the module's text).

    In one transaction under the limits' advisory locks, sent in one round trip as the plain
    claim is: the jobs start, then, per limit, the starts beyond it are undone (each statement sees
    this transaction's starts and every claim committed before the locks were granted). A rate
    then reserves the starts of rate-limited jobs. Paused jobs are parked first."""
    paused = [i for i in fetched if rules.paused(i.queue, i.actor.actor_name)]
    live = [i for i in fetched if not rules.paused(i.queue, i.actor.actor_name)]
    parked: dict[int, str | None] = {}
    if paused:
        with conn.transaction():
            parked = _park(conn, [(item, "paused", None) for item in paused])
    started, over = _start_within_limits(conn, worker_id, live, rules) if live else ({}, set())
    parked |= dict.fromkeys(over, "slot")
    runnable = [i for i in live if i.message_id in started and i.job_id not in over]
    later = _later_by_rate(conn, runnable, worker_id, started)
    parked |= {item.job_id: "rate" for item, _, _ in later}
    undone = over | {item.job_id for item, _, _ in later}
    started = {m: dataclasses.replace(a, limited=True) for m, a in started.items() if a.job_id not in undone}
    return Outcome(started, parked, min((wait_s for _, _, wait_s in later), default=None))


def _scopes(item: Fetched, rules: flow.Rules) -> list[Scope]:
    """The concurrency limits a job falls under."""
    scopes = []
    limit = rules.actor_limit(item.actor)
    if limit:
        name = item.actor.actor_name
        key = item.key
        lock = f"actor:{name}" + (f":{key}" if key is not None else "")
        scopes.append(Scope(lock, limit, actor=name, key=key, keyed=key is not None))
    if item.queue in rules.queue_limits:
        scopes.append(Scope(f"queue:{item.queue}", rules.queue_limits[item.queue], queue=item.queue))
    return scopes


def _start_within_limits(
    conn: psycopg.Connection, worker_id: str, live: list[Fetched], rules: flow.Rules
) -> tuple[dict[str, ledger.StartedAttempt], set[int]]:
    """Start the jobs under their limits' locks and undo the starts beyond a limit; returns the
    started attempts and the ids undone. The transaction's statements (BEGIN, the locks, the
    start, one undo per limit, COMMIT) go as one simple query, their values bound by psycopg's
    client-side binding: one round trip, and the locks are held for the server's work only."""
    scopes = {item.job_id: _scopes(item, rules) for item in live}
    distinct = sorted({s for found in scopes.values() for s in found}, key=lambda s: s.name)
    pairs = [(i.job_id, i.message_id) for i in live]
    cur = psycopg.ClientCursor(conn)
    statements = ["BEGIN"]
    statements += [cur.mogrify(LOCK_SCOPE, (s.name,)) for s in distinct]  # one order: no deadlock
    statements.append(cur.mogrify(ledger_sql.JOB_START_MANY, ledger.job_start_params(worker_id, pairs)))
    statements += [
        cur.mogrify(flow_sql.JOB_UNSTART_OVER, _over_params(worker_id, s, live, scopes)) for s in distinct
    ]
    statements.append("COMMIT")
    try:
        cur.execute(";\n".join(statements))
    except psycopg.Error:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            conn.execute("ROLLBACK")
        raise
    for _ in range(1 + len(distinct)):  # past BEGIN and the locks
        cur.nextset()
    started = ledger.started_of(cur, pairs)
    over: set[int] = set()
    for _ in distinct:
        cur.nextset()
        over |= {job_id for (job_id,) in cur.fetchall()}
    return started, over


def _over_params(
    worker_id: str, scope: Scope, live: list[Fetched], scopes: dict[int, list[Scope]]
) -> dict[str, Any]:
    """JOB_UNSTART_OVER's parameters for one limit, over this claim's jobs that fall under it."""
    return {
        "job_ids": [i.job_id for i in live if scope in scopes[i.job_id]],
        "worker_id": worker_id,
        "queue": scope.queue,
        "actor": scope.actor,
        "keyed": scope.keyed,
        "key": scope.key,
        "limit": scope.limit,
    }


def _later_by_rate(
    conn: psycopg.Connection, items: list[Fetched], worker_id: str, started: dict[str, ledger.StartedAttempt]
) -> list[tuple[Fetched, datetime, float]]:
    """Started jobs whose rate limit reserves them a later start, undone (waiting for it off the
    broker, their attempt not spent): each with its time and the seconds until it. A job
    published at its reserved start and taken on time does not reserve again."""
    by_key: dict[str, list[Fetched]] = defaultdict(list)
    for item in items:
        rate = flow.actor_flow(item.actor).rate
        if rate is not None and not item.on_reserved_time(rate):
            by_key[rate_key(item)].append(item)
    if not by_key:
        return []
    later = []
    with conn.transaction():
        for key, group in sorted(by_key.items()):
            rate = flow.actor_flow(group[0].actor).rate
            assert rate is not None
            for item, (slot, wait_s) in zip(
                group, flow.rate_reserve(conn, key, rate, len(group)), strict=True
            ):
                if wait_s > DEFAULT_RATE_SLACK_S:
                    later.append((item, slot, wait_s))
        if later:
            conn.execute(
                flow_sql.JOB_UNSTART,
                {
                    "worker_id": worker_id,
                    "job_ids": [item.job_id for item, _, _ in later],
                    "attempts": [started[item.message_id].attempt for item, _, _ in later],
                    "reasons": ["rate"] * len(later),
                    "etas": [slot for _, slot, _ in later],
                },
            )
    return later


def rate_key(item: Fetched) -> str:
    key = item.key
    return f"actor:{item.actor.actor_name}" + (f":{key}" if key is not None else "")


def _park(conn: psycopg.Connection, held: list[tuple[Fetched, str, datetime | None]]) -> dict[int, str]:
    """Park held jobs off the broker; returns job id -> what it waits for (None: a pause that
    ended meanwhile: the job went back to the relay)."""
    if not held:
        return {}
    if any(reason == "paused" for _, reason, _ in held):
        conn.execute(flow_sql.FLOW_LOCK_PAUSES)
    rows = conn.execute(
        flow_sql.JOB_PARK,
        {
            "job_ids": [item.job_id for item, _, _ in held],
            "message_ids": [item.message_id for item, _, _ in held],
            "reasons": [reason for _, reason, _ in held],
            "etas": [eta for _, _, eta in held],
        },
    ).fetchall()
    parked = dict(rows)
    if any(reason is None for reason in parked.values()):
        ledger.wake_relays(conn)
    return parked


def release_slots(conn: psycopg.Connection, rules: flow.Rules, actors: dict[str, dramatiq.Actor]) -> int:
    """Jobs waiting for a slot go back to the relay as far as slots are free (best priority
    first); returns how many were waiting. `conn` in autocommit mode (the relay's). Unlocked:
    the relays of several processes may let the same free slots go at once; the claim's undo
    keeps the limit, and the extra jobs wait again."""
    waiters = conn.execute(flow_sql.JOB_SLOT_WAITERS).fetchall()
    if not waiters:
        return 0
    names = sorted({actor for actor, _, _, _ in waiters})
    running = Counter(
        {(a, k): n for a, k, n in conn.execute(flow_sql.JOB_RUNNING_OF_ACTORS, {"actors": names}).fetchall()}
    )
    queues = sorted({queue for _, queue, _, _ in waiters})
    by_queue = Counter(dict(conn.execute(flow_sql.JOB_RUNNING_OF_QUEUES, {"queues": queues}).fetchall()))
    for actor_name, queue, key, waiting in waiters:
        free = waiting
        actor = actors.get(actor_name)
        limit = rules.actor_limit(actor) if actor is not None else None
        keyed = actor is not None and flow.actor_flow(actor).key is not None
        if limit:
            used = (
                running[(actor_name, key)]
                if keyed
                else sum(n for (a, _), n in running.items() if a == actor_name)
            )
            free = min(free, limit - used)
        if queue in rules.queue_limits:
            free = min(free, rules.queue_limits[queue] - by_queue[queue])
        if free <= 0:
            continue
        params = {"actor": actor_name, "queue": queue, "flow_key": key, "limit": free}
        n = conn.execute(flow_sql.JOB_UNPARK_SLOTS, params).rowcount
        running[(actor_name, key)] += n
        by_queue[queue] += n
    # No NOTIFY: the relay that runs this pass publishes them next (waking every relay would
    # make each run this pass again before the released jobs are claimed).
    return sum(waiting for _, _, _, waiting in waiters)
