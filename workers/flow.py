"""Flow control's rules: pauses and limits of queues and actors, and the rate limiters.

What may start is decided by the ledger (docs/architecture.md, "Flow control"):
- ops pause queues and actors, and limit queues, in `flow_controls` (persisted, fleet-wide); each
  worker process reads that table every `DEFAULT_RULES_REFRESH_S` (`Rules`), so within 2 seconds
  every worker stops starting jobs of a paused queue or actor;
- actors declare `concurrency=N`, `concurrency_key=fn` (the limit then holds per key, computed
  from the arguments at enqueue) and `rate_limit="10/s"` (per key too, with a key function);
- a job held back waits in the ledger (`jobs.waiting_for`), off the broker, without spending an
  attempt (workers/flow_claim.py).
Rate limits are GCRA schedules in `flow_rates`: each start (or a batch of them) reserves the
next free times, evenly spaced; `rate_reserve` is shared with the notification channels.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import psycopg
from psycopg.rows import dict_row

from config.parse import rate_parts
from db import pool
from workers import flow_sql, ledger

logger = logging.getLogger("skyport.flow")

# How often a worker process reads the pauses and limits (a pause reaches every worker within 2 s).
DEFAULT_RULES_REFRESH_S = 1.0
# Scopes of flow_controls rows.
SCOPES = ("queue", "actor")
# Free text ops give with a pause.
MAX_REASON_LENGTH = 500
# The largest concurrency limit ops may set.
MAX_CONCURRENCY = 100_000


class FlowError(ValueError):
    """A pause, limit or rate given as it cannot be (unknown queue, a limit out of range...);
    `field` names what is wrong."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Rate:
    """At most `count` starts per `period_s`, evenly spaced (`interval_s` apart)."""

    count: int
    period_s: float

    @property
    def interval_s(self) -> float:
        return self.period_s / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s"


def parse_rate(text: str, field_name: str = "rate_limit") -> Rate:
    """ "10/s", "100/m", "5/2s", "1000/h", "20/0.5s" -> Rate; FlowError otherwise."""
    try:
        return Rate(*rate_parts(text))
    except ValueError as exc:
        raise FlowError(f"{field_name} {exc}", field_name) from None


@dataclass(frozen=True)
class ActorFlow:
    """An actor's declared limits (its options `concurrency`, `concurrency_key`, `rate_limit`)."""

    concurrency: int | None = None
    key: Callable[..., Any] | None = None
    rate: Rate | None = None


_actor_flows: dict[str, ActorFlow] = {}


def actor_flow(actor: dramatiq.Actor) -> ActorFlow:
    """The actor's declared limits (checked once: a bad option fails the first enqueue or claim)."""
    flow = _actor_flows.get(actor.actor_name)
    if flow is None:
        options = actor.options
        concurrency = options.get("concurrency")
        if concurrency is not None and not _whole_limit(concurrency):
            raise FlowError(
                f"{actor.actor_name}: concurrency must be a whole number from 1 to {MAX_CONCURRENCY}",
                "concurrency",
            )
        key = options.get("concurrency_key")
        if key is not None and not callable(key):
            raise FlowError(f"{actor.actor_name}: concurrency_key must be a function", "concurrency_key")
        rate = options.get("rate_limit")
        flow = ActorFlow(
            concurrency, key, parse_rate(rate, f"{actor.actor_name}: rate_limit") if rate else None
        )
        _actor_flows[actor.actor_name] = flow
    return flow


def _whole_limit(value: Any) -> bool:
    """Whether a concurrency limit is a whole number from 1 to MAX_CONCURRENCY (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_CONCURRENCY


def flow_key(actor: dramatiq.Actor, args: list[Any], kwargs: dict[str, Any]) -> str | None:
    """The key an actor's limits hold per, from a job's arguments (None: the actor has no key)."""
    key_fn = actor_flow(actor).key
    if key_fn is None:
        return None
    key = key_fn(*args, **kwargs)
    if not isinstance(key, str | int) or isinstance(key, bool):
        raise FlowError(f"{actor.actor_name}: concurrency_key returned {key!r:.40}, not a text", "args")
    return str(key)


# ---- the ops rules (flow_controls), as each worker process sees them --------------------------


@dataclass(frozen=True)
class Rules:
    """Paused queues and actors, and run-time concurrency limits, at one reading."""

    paused_queues: frozenset[str] = frozenset()
    paused_actors: frozenset[str] = frozenset()
    queue_limits: dict[str, int] = field(default_factory=dict)
    actor_limits: dict[str, int] = field(default_factory=dict)

    def paused(self, queue: str, actor: str) -> bool:
        return queue in self.paused_queues or actor in self.paused_actors

    def actor_limit(self, actor: dramatiq.Actor) -> int | None:
        """The actor's concurrency: ops' run-time limit, else its declared one."""
        return self.actor_limits.get(actor.actor_name) or actor_flow(actor).concurrency

    def limited(self, queue: str, actor: dramatiq.Actor) -> bool:
        flow = actor_flow(actor)
        return bool(queue in self.queue_limits or self.actor_limit(actor) or flow.rate is not None)


def read_rules(conn: psycopg.Connection) -> Rules:
    rows = conn.execute(FLOW_RULES).fetchall()
    return Rules(
        paused_queues=frozenset(n for s, n, paused, _ in rows if paused and s == "queue"),
        paused_actors=frozenset(n for s, n, paused, _ in rows if paused and s == "actor"),
        queue_limits={n: c for s, n, _, c in rows if c is not None and s == "queue"},
        actor_limits={n: c for s, n, _, c in rows if c is not None and s == "actor"},
    )


class RulesWatcher(threading.Thread):
    """Reads the rules every `interval_s` (on a pool connection); `rules` is the latest reading.
    While PostgreSQL is away it keeps the last one."""

    def __init__(self, interval_s: float = DEFAULT_RULES_REFRESH_S) -> None:
        super().__init__(name="skyport-flow-rules", daemon=True)
        self.interval_s = interval_s
        self.rules = Rules()
        self.stopping = threading.Event()

    def refresh(self) -> None:
        with pool.connection() as conn:
            self.rules = read_rules(conn)

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.refresh()
            except Exception as exc:  # PostgreSQL away: the last rules hold
                logger.warning("could not read the flow rules: %s", str(exc).strip()[:200])


# ---- SQL on flow_controls and flow_rates (their own tables) ------------------------------------

# -- flow_rules -- every pause and limit (flow_controls_pkey; a few rows).
FLOW_RULES = (
    "SELECT scope, name, paused, concurrency FROM flow_controls WHERE paused OR concurrency IS NOT NULL"
)

# -- flow_pause -- pause a queue or actor (the row made at the first change; flow_controls_pkey).
FLOW_PAUSE = """
INSERT INTO flow_controls (scope, name, paused, paused_reason, paused_by, paused_at, changed_by)
VALUES (%(scope)s, %(name)s, true, %(reason)s, %(by)s, now(), %(by)s)
    ON CONFLICT (scope, name) DO UPDATE
   SET paused = true, paused_reason = excluded.paused_reason, paused_by = excluded.paused_by,
       paused_at = CASE WHEN flow_controls.paused THEN flow_controls.paused_at ELSE now() END,
       changed_by = excluded.changed_by, changed_at = now()
"""

# -- flow_resume -- resume a queue or actor; returns whether it was paused (flow_controls_pkey).
FLOW_RESUME = """
UPDATE flow_controls
   SET paused = false, paused_reason = NULL, paused_by = NULL, paused_at = NULL,
       changed_by = %(by)s, changed_at = now()
 WHERE scope = %(scope)s AND name = %(name)s AND paused
RETURNING name
"""

# -- flow_limit -- set (or clear, NULL) a run-time concurrency limit (flow_controls_pkey).
FLOW_LIMIT = """
INSERT INTO flow_controls (scope, name, concurrency, changed_by)
VALUES (%(scope)s, %(name)s, %(limit)s, %(by)s)
    ON CONFLICT (scope, name) DO UPDATE
   SET concurrency = excluded.concurrency, changed_by = excluded.changed_by, changed_at = now()
"""

# -- flow_controls_all -- every row, for the queue and actor tables (flow_controls_pkey).
FLOW_CONTROLS_ALL = """
SELECT scope, name, paused, paused_reason, paused_by, paused_at, concurrency, changed_by, changed_at
  FROM flow_controls ORDER BY scope, name
"""

# -- rate_reserve -- reserve `n` evenly spaced starts of a rate limit: returns the first one's time
# and the clock; the k-th (from 0) is first + k * interval (flow_rates_pkey; the row lock orders
# callers). The clock, not the transaction's start: a claim may have waited for a lock.
RATE_RESERVE = """
INSERT INTO flow_rates AS r (key, next_at)
VALUES (%(key)s, clock_timestamp() + make_interval(secs => %(n)s * %(interval_s)s::float8))
    ON CONFLICT (key) DO UPDATE
   SET next_at = greatest(r.next_at, clock_timestamp())
                 + make_interval(secs => %(n)s * %(interval_s)s::float8)
RETURNING next_at - make_interval(secs => %(n)s * %(interval_s)s::float8), clock_timestamp()
"""

# -- rate_take -- reserve the next start of a rate limit (`interval_s` 0: no rate, only a
# provider's hold-off) if it is at most `max_wait_s` away: returns the seconds to wait for it;
# no row when it is further (nothing reserved then). flow_rates_pkey.
RATE_TAKE = """
INSERT INTO flow_rates AS r (key, next_at)
VALUES (%(key)s, clock_timestamp() + make_interval(secs => %(interval_s)s::float8))
    ON CONFLICT (key) DO UPDATE
   SET next_at = greatest(r.next_at, clock_timestamp()) + make_interval(secs => %(interval_s)s::float8)
 WHERE r.next_at <= clock_timestamp() + make_interval(secs => %(max_wait_s)s::float8)
RETURNING extract(epoch FROM next_at - clock_timestamp()) - %(interval_s)s::float8
"""

# -- rate_hold_off -- nobody starts before `until` on this rate limit (a provider's 429 with
# Retry-After; flow_rates_pkey).
RATE_HOLD_OFF = """
INSERT INTO flow_rates AS r (key, next_at) VALUES (%(key)s, %(until)s)
    ON CONFLICT (key) DO UPDATE SET next_at = greatest(r.next_at, excluded.next_at)
"""


# -- rate_prune -- rate schedules idle for an hour (one per key of a keyed rate limit: they would
# pile up); a schedule made again starts from now, as a new one does. A scan of flow_rates, daily.
RATE_PRUNE = "DELETE FROM flow_rates WHERE next_at < now() - interval '1 hour'"


def prune_rates(conn: psycopg.Connection) -> int:
    """Delete rate schedules idle for an hour; returns how many."""
    return conn.execute(RATE_PRUNE).rowcount


def rate_reserve(conn: psycopg.Connection, key: str, rate: Rate, n: int = 1) -> list[tuple[datetime, float]]:
    """Reserve `n` starts of a rate limit; returns, for each, its time and the seconds to wait
    until it (0: now). Commits with the caller's transaction."""
    first, now = conn.execute(RATE_RESERVE, {"key": key, "n": n, "interval_s": rate.interval_s}).fetchone()
    slots = [first + timedelta(seconds=k * rate.interval_s) for k in range(n)]
    return [(slot, max(0.0, (slot - now).total_seconds())) for slot in slots]


def rate_hold_off(conn: psycopg.Connection, key: str, seconds: float) -> None:
    """Nobody starts on this rate limit for `seconds` from now (a provider asked to slow down)."""
    until = ledger.now(conn) + timedelta(seconds=seconds)
    conn.execute(RATE_HOLD_OFF, {"key": key, "until": until})


def rate_hold_off_for(key: str, seconds: float) -> None:
    """`rate_hold_off` in its own short transaction."""
    with pool.connection() as conn:
        rate_hold_off(conn, key, seconds)


def rate_take(key: str, rate: Rate | None, max_wait_s: float) -> float | None:
    """Reserve one start of a rate limit, or with `rate` None only respect its hold-off, if it
    is at most `max_wait_s` away; returns the seconds to wait for it (None: further, nothing
    reserved). Its own short transaction."""
    params = {"key": key, "interval_s": rate.interval_s if rate else 0.0, "max_wait_s": max_wait_s}
    with pool.connection() as conn:
        row = conn.execute(RATE_TAKE, params).fetchone()
    return None if row is None else max(0.0, float(row[0]))


# ---- ops actions (the CLI and the console; each in the caller's transaction) -------------------


def _check(scope: str, name: str, known: set[str]) -> None:
    if scope not in SCOPES:
        raise FlowError(f"scope must be queue or actor, got {scope!r:.40}", "scope")
    if name not in known:
        raise FlowError(f"unknown {scope} {name!r:.80} (known: {', '.join(sorted(known))})", "name")


def pause(
    conn: psycopg.Connection, scope: str, name: str, by: str, reason: str | None, known: set[str]
) -> None:
    """Pause a queue or an actor for the whole fleet (again: the reason is updated)."""
    _check(scope, name, known)
    if reason is not None and (len(reason) > MAX_REASON_LENGTH or "\x00" in reason):
        raise FlowError(f"reason must be a text of at most {MAX_REASON_LENGTH} characters", "reason")
    conn.execute(FLOW_PAUSE, {"scope": scope, "name": name, "reason": reason or None, "by": by})


def resume(conn: psycopg.Connection, scope: str, name: str, by: str, known: set[str]) -> int:
    """Resume a queue or actor: its held jobs go back to the relay. Returns how many; -1: it was
    not paused (nothing changed)."""
    _check(scope, name, known)
    if conn.execute(FLOW_RESUME, {"scope": scope, "name": name, "by": by}).fetchone() is None:
        return -1
    released = conn.execute(flow_sql.JOB_UNPARK_PAUSED, {"scope": scope, "name": name}).rowcount
    ledger.wake_relays(conn)
    return released


def set_limit(
    conn: psycopg.Connection, scope: str, name: str, limit: int | None, by: str, known: set[str]
) -> None:
    """A run-time concurrency limit (None: none; an actor's declared one applies again)."""
    _check(scope, name, known)
    if limit is not None and not _whole_limit(limit):
        raise FlowError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY}", "concurrency")
    conn.execute(FLOW_LIMIT, {"scope": scope, "name": name, "limit": limit, "by": by})
    ledger.wake_relays(conn)  # a raised limit frees slots at once


def flow_table(
    conn: psycopg.Connection, actors: dict[str, dramatiq.Actor]
) -> dict[str, list[dict[str, Any]]]:
    """Per queue and per actor: waiting, running, held back (paused, slot, rate), limit, rate,
    paused (with reason, who, since when)."""
    with conn.cursor(row_factory=dict_row) as cur:
        counts = cur.execute(flow_sql.JOB_FLOW_TABLE).fetchall()
        controls = {(r["scope"], r["name"]): r for r in cur.execute(FLOW_CONTROLS_ALL).fetchall()}
    names = {"queue": {a.queue_name for a in actors.values()}, "actor": set(actors)}
    names["queue"] |= {c["queue"] for c in counts}
    names["actor"] |= {c["actor"] for c in counts}
    tables: dict[str, list[dict[str, Any]]] = {}
    for scope in SCOPES:
        rows = []
        for name in sorted(names[scope] | {n for s, n in controls if s == scope}):
            mine = [c for c in counts if c[scope] == name]
            row = {scope: name} | _sums(mine) | _control(controls.get((scope, name)))
            if scope == "actor" and name in actors:
                declared = actor_flow(actors[name])
                row["queue"] = actors[name].queue_name
                row["limit"] = row["limit"] or declared.concurrency
                row["limit_key"] = declared.key is not None
                row["rate"] = str(declared.rate) if declared.rate else None
            rows.append(row)
        tables[f"{scope}s"] = rows
    return tables


def _sums(rows: list[dict[str, Any]]) -> dict[str, int]:
    keys = ("waiting", "running", "waiting_paused", "waiting_slot", "waiting_rate")
    return {k: sum(r[k] for r in rows) for k in keys}


def _control(row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    return {
        "paused": bool(row.get("paused")),
        "paused_reason": row.get("paused_reason"),
        "paused_by": row.get("paused_by"),
        "paused_at": row.get("paused_at"),
        "limit": row.get("concurrency"),
        "runtime_limit": row.get("concurrency"),  # set by ops (the rest is the actor's own)
    }
