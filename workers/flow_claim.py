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
from datetime import datetime, timedelta
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
    """Claim, park or start the jobs of `fetched` (one transaction; see the module's text)."""
    with conn.transaction():
        now = ledger.now(conn)
        held: list[tuple[Fetched, str, datetime | None]] = []
        live = []
        for item in fetched:
            if rules.paused(item.queue, item.actor.actor_name):
                held.append((item, "paused", None))
            else:
                live.append(item)
        admitted, over = _admit_slots(conn, live, rules)
        held += [(item, "slot", None) for item in over]
        runnable, later = _admit_rates(conn, admitted, now)
        held += [(item, "rate", eta) for item, eta in later]
        started = ledger.job_start_many(conn, worker_id, [(i.job_id, i.message_id) for i in runnable])
        started = {m: dataclasses.replace(a, limited=True) for m, a in started.items()}
        parked = _park(conn, held)
        etas = [eta for _, eta in later]
        next_due_s = flow.seconds_until(min(etas), ledger.now(conn)) if etas else None
    return Outcome(started, parked, next_due_s)


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


def _admit_slots(
    conn: psycopg.Connection, items: list[Fetched], rules: flow.Rules
) -> tuple[list[Fetched], list[Fetched]]:
    """Jobs that get a slot under every limit they fall under, and the others."""
    scopes = {item.job_id: _scopes(item, rules) for item in items}
    names = sorted({name for found in scopes.values() for name, _ in found})
    if not names:
        return items, []
    for name in names:  # in one order everywhere: no deadlock between claims
        conn.execute(LOCK_SCOPE, (name,))
    free = {name: limit - used for name, limit in _limits(scopes).items() for used in [_in_use(conn, name)]}
    admitted, over = [], []
    for item in items:
        if all(free[name] > 0 for name, _ in scopes[item.job_id]):
            for name, _ in scopes[item.job_id]:
                free[name] -= 1
            admitted.append(item)
        else:
            over.append(item)
    return admitted, over


def _limits(scopes: dict[int, list[tuple[str, int]]]) -> dict[str, int]:
    return {name: limit for found in scopes.values() for name, limit in found}


def _in_use(conn: psycopg.Connection, name: str) -> int:
    """Running jobs of a scope (`actor:<name>[:<key>]` or `queue:<name>`)."""
    kind, _, rest = name.partition(":")
    if kind == "queue":
        row = conn.execute(ledger_sql.JOB_RUNNING_OF_QUEUES, {"queues": [rest]}).fetchone()
        return row[1] if row else 0
    actor, sep, key = rest.partition(":")
    counts = conn.execute(ledger_sql.JOB_RUNNING_OF_ACTORS, {"actors": [actor]}).fetchall()
    return sum(n for _, k, n in counts if not sep or k == key)


def _admit_rates(
    conn: psycopg.Connection, items: list[Fetched], now: datetime
) -> tuple[list[Fetched], list[tuple[Fetched, datetime]]]:
    """Jobs whose reserved start is now, and the others with their reserved start."""
    by_key: dict[str, list[Fetched]] = defaultdict(list)
    runnable = []
    for item in items:
        rate = flow.actor_flow(item.actor).rate
        if rate is None or item.reserved:
            runnable.append(item)
        else:
            by_key[rate_key(item)].append(item)
    later = []
    for key, group in sorted(by_key.items()):
        rate = flow.actor_flow(group[0].actor).rate
        assert rate is not None
        for item, wait_s in zip(group, flow.rate_reserve(conn, key, rate, len(group)), strict=True):
            if wait_s <= DEFAULT_RATE_SLACK_S:
                runnable.append(item)
            else:
                later.append((item, now + timedelta(seconds=wait_s)))
    return runnable, later


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
    first); returns how many. `conn` in autocommit mode (the relay's)."""
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
    released = 0
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
        released += n
    # No NOTIFY: the relay that runs this pass publishes them next (waking every relay would
    # make each run this pass again before the released jobs are claimed).
    return released
