"""Claims under flow control, and the release of jobs that waited for a slot.

A fetched message whose queue or actor is paused, or that a concurrency or rate limit governs,
is claimed here instead of by the plain batch claim (workers/middleware.py). In one transaction:
- a paused job is parked (`waiting_for = 'paused'`) off the broker;
- the concurrency limits it falls under are locked (transaction advisory locks, taken in a fixed
  order), the running jobs of each counted from the ledger, and jobs beyond a limit parked
  (`slot`): slots are the ledger's running rows, so a killed worker's slots come back when the
  lifeline takes its jobs back, and no slot can leak;
- a rate-limited job reserves its start (flow.rate_reserve): due now, it starts; else it is
  parked (`rate`) with its reserved time as eta, and the relay publishes it then, marked as
  reserved so that its claim does not reserve again;
- the others start (queued -> running), as in the plain claim.
No parked job spends an attempt. The relay's flow pass (`release_slots`) gives slot-waiting jobs
back to the relay, best priority first, as slots free up; a resume gives back the paused ones.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dramatiq
import psycopg

from workers import flow, ledger, ledger_sql

# A reserved start this close is taken now rather than parked (the relay's publication of a
# parked job costs more than this).
DEFAULT_RATE_SLACK_S = 0.02
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
    reserved: bool  # published at its reserved rate time: no second reservation

    @property
    def key(self) -> str | None:
        return flow.flow_key(self.actor, self.args, self.kwargs)


@dataclass
class Outcome:
    """What the controlled claim did: started attempts by message id; parked jobs; the seconds
    until the earliest reserved start (None: none was parked for a rate)."""

    started: dict[str, ledger.StartedAttempt]
    parked: dict[int, str]
    next_due_s: float | None = None


def claim(conn: psycopg.Connection, worker_id: str, fetched: list[Fetched], rules: flow.Rules) -> Outcome:
    """Claim, park or start the jobs of `fetched` (one transaction; see the module's text).

    Under the limits' locks, the running jobs are counted (each count a statement after the
    locks: it sees every claim committed before they were granted) and the jobs started; the
    starts beyond a limit are undone at once. In pipeline mode the locks, the counts and the
    start go in one round trip: a limit that does not bind costs that and the commit."""
    with conn.pipeline(), conn.transaction():
        paused = [i for i in fetched if rules.paused(i.queue, i.actor.actor_name)]
        live = [i for i in fetched if not rules.paused(i.queue, i.actor.actor_name)]
        scopes = {item.job_id: _scopes(item, rules) for item in live}
        names = sorted({name for found in scopes.values() for name, _ in found})
        for name in names:  # in one order everywhere: no deadlock between claims
            conn.execute(LOCK_SCOPE, (name,))
        counting = {name: _count_in_use(conn, name) for name in names}
        started = ledger.job_start_many(conn, worker_id, [(i.job_id, i.message_id) for i in live])
        ours = [i for i in live if i.message_id in started]
        limits = _limits(scopes)
        excess = {name: _in_use(name, cur) - limits[name] for name, cur in counting.items()}
        for item in ours:
            for name, _ in scopes[item.job_id]:
                excess[name] += 1
        over = _over_limits(ours, scopes, excess)
        over_ids = {item.message_id for item in over}
        runnable = [i for i in ours if i.message_id not in over_ids]
        later = _later_by_rate(conn, runnable)
        undone = [(item, "slot", None) for item in over] + [(item, "rate", slot) for item, slot, _ in later]
        _unstart(conn, worker_id, undone, started)
        for item, _, _ in undone:
            started.pop(item.message_id)
        parked = _park(conn, [(item, "paused", None) for item in paused])
        parked |= {item.job_id: reason for item, reason, _ in undone}
    started = {m: dataclasses.replace(a, limited=True) for m, a in started.items()}
    return Outcome(started, parked, min((wait_s for _, _, wait_s in later), default=None))


def _scopes(item: Fetched, rules: flow.Rules) -> list[tuple[str, int]]:
    """The concurrency limits a job falls under: (lock and count name, limit)."""
    scopes = []
    limit = rules.actor_limit(item.actor)
    if limit:
        key = item.key
        scopes.append((f"actor:{item.actor.actor_name}" + (f":{key}" if key is not None else ""), limit))
    if item.queue in rules.queue_limits:
        scopes.append((f"queue:{item.queue}", rules.queue_limits[item.queue]))
    return scopes


def _over_limits(
    started: list[Fetched], scopes: dict[int, list[tuple[str, int]]], excess: dict[str, int]
) -> list[Fetched]:
    """The started jobs to undo so that no limit is exceeded: the batch's last ones first."""
    over = []
    for item in reversed(started):
        if any(excess[name] > 0 for name, _ in scopes[item.job_id]):
            for name, _ in scopes[item.job_id]:
                excess[name] -= 1
            over.append(item)
    return over


def _unstart(
    conn: psycopg.Connection,
    worker_id: str,
    undone: list[tuple[Fetched, str, datetime | None]],
    started: dict[str, ledger.StartedAttempt],
) -> None:
    """Started jobs that may not run now wait off the broker, their attempt not spent."""
    if not undone:
        return
    conn.execute(
        ledger_sql.JOB_UNSTART,
        {
            "worker_id": worker_id,
            "job_ids": [item.job_id for item, _, _ in undone],
            "attempts": [started[item.message_id].attempt for item, _, _ in undone],
            "reasons": [reason for _, reason, _ in undone],
            "etas": [eta for _, _, eta in undone],
        },
    )


def _limits(scopes: dict[int, list[tuple[str, int]]]) -> dict[str, int]:
    return {name: limit for found in scopes.values() for name, limit in found}


def _count_in_use(conn: psycopg.Connection, name: str) -> psycopg.Cursor:
    """Count the running jobs of a scope (`actor:<name>[:<key>]` or `queue:<name>`); the cursor
    gives the counts (read by `_in_use`, so that a pipeline sends every count at once)."""
    kind, _, rest = name.partition(":")
    if kind == "queue":
        return conn.execute(ledger_sql.JOB_RUNNING_OF_QUEUES, {"queues": [rest]})
    return conn.execute(ledger_sql.JOB_RUNNING_OF_ACTORS, {"actors": [rest.partition(":")[0]]})


def _in_use(name: str, counted: psycopg.Cursor) -> int:
    kind, _, rest = name.partition(":")
    rows = counted.fetchall()
    if kind == "queue":
        return sum(n for _, n in rows)
    _, sep, key = rest.partition(":")
    return sum(n for _, k, n in rows if not sep or k == key)


def _later_by_rate(conn: psycopg.Connection, items: list[Fetched]) -> list[tuple[Fetched, datetime, float]]:
    """Started jobs whose rate limit reserves them a later start: with its time and the seconds
    until it. A job published at its reserved start (`reserved`) does not reserve again."""
    by_key: dict[str, list[Fetched]] = defaultdict(list)
    for item in items:
        if flow.actor_flow(item.actor).rate is not None and not item.reserved:
            by_key[rate_key(item)].append(item)
    later = []
    for key, group in sorted(by_key.items()):
        rate = flow.actor_flow(group[0].actor).rate
        assert rate is not None
        for item, (slot, wait_s) in zip(group, flow.rate_reserve(conn, key, rate, len(group)), strict=True):
            if wait_s > DEFAULT_RATE_SLACK_S:
                later.append((item, slot, wait_s))
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
        conn.execute(ledger_sql.FLOW_LOCK_PAUSES)
    rows = conn.execute(
        ledger_sql.JOB_PARK,
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
    first); returns how many were waiting. `conn` in autocommit mode (the relay's)."""
    waiters = conn.execute(ledger_sql.JOB_SLOT_WAITERS).fetchall()
    if not waiters:
        return 0
    names = sorted({actor for actor, _, _, _ in waiters})
    running = Counter(
        {
            (a, k): n
            for a, k, n in conn.execute(ledger_sql.JOB_RUNNING_OF_ACTORS, {"actors": names}).fetchall()
        }
    )
    queues = sorted({queue for _, queue, _, _ in waiters})
    by_queue = Counter(dict(conn.execute(ledger_sql.JOB_RUNNING_OF_QUEUES, {"queues": queues}).fetchall()))
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
        n = conn.execute(ledger_sql.JOB_UNPARK_SLOTS, params).rowcount
        running[(actor_name, key)] += n
        by_queue[queue] += n
    # No NOTIFY: the relay that runs this pass publishes them next (waking every relay would
    # make each run this pass again before the released jobs are claimed).
    return sum(waiting for _, _, _, waiting in waiters)
