"""The soak's final consistency checks, run on the database after the drain.

Each returns a `Check`: a name, whether it held, and what was found. A duplicate effect is
"explained" only when the attempt that produced it was cut short by a process the soak killed
(its attempt record says `lost` or `interrupted` and its worker's pid is one the killer took down):
delivery is at least once, and a kill between a job's effect and its ledger commit repeats it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.soak.load import AppLoad, NotificationLoad, WebhookLoad
from bench.soak.procs import Kill

# Examples listed per failed check.
SHOWN = 10


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _sample(items: Sequence[Any]) -> str:
    shown = ", ".join(str(i) for i in list(items)[:SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > SHOWN else "")


def _n(items: Sequence[Any]) -> str:
    """How many, and the first few when there are any."""
    return f"{len(items)}: {_sample(items)}" if items else "0"


def ledger_final(conn: psycopg.Connection) -> Check:
    rows = conn.execute(
        """SELECT actor, state, count(*) FROM jobs
            WHERE state NOT IN ('succeeded', 'dead', 'cancelled') GROUP BY 1, 2 ORDER BY 3 DESC"""
    ).fetchall()
    total = conn.execute("SELECT count(*) FROM jobs").fetchone()[0]
    detail = f"{total:,} jobs in the ledger" + (f"; not final: {_sample(rows)}" if rows else ", all final")
    return Check("every job in the ledger reached a final state", not rows, detail)


def app_jobs(conn: psycopg.Connection, app: AppLoad) -> Check:
    """Every job the app enqueued exists and is final; none of the rolled-back ones exists."""
    ids = list(app.jobs)
    found = dict(conn.execute("SELECT id, state FROM jobs WHERE id = ANY(%s)", (ids,)).fetchall())
    missing = sorted(set(ids) - set(found))
    open_ = sorted(i for i, state in found.items() if state not in ("succeeded", "dead", "cancelled"))
    ghosts = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE id = ANY(%s)", (app.rolled_back,))]
    by_kind = Counter(app.jobs.values())
    detail = (
        f"{len(ids):,} app jobs ({', '.join(f'{k} {n:,}' for k, n in sorted(by_kind.items()))}); "
        f"missing {_n(missing)}; not final {_n(open_)}; "
        f"{len(app.rolled_back)} enqueued in rolled-back transactions, {len(ghosts)} of them exist"
    )
    return Check("every app job exists and is final (no lost job)", not (missing or open_ or ghosts), detail)


def dead_jobs(conn: psycopg.Connection, app: AppLoad) -> Check:
    rows = conn.execute(
        "SELECT id, actor, attempts, max_attempts, last_error FROM jobs WHERE state = 'dead' ORDER BY id"
    ).fetchall()
    poison = {i for i, kind in app.jobs.items() if kind == "poison"}
    unintended = [(i, actor, (error or "")[:120]) for i, actor, _, _, error in rows if i not in poison]
    dead_poison = {r[0] for r in rows if r[0] in poison}
    alive_poison = sorted(poison - dead_poison)
    detail = (
        f"{len(rows)} dead: {len(dead_poison)} of the {len(poison)} poison jobs; "
        f"other dead jobs {_n(unintended)}; poison jobs not dead {_n(alive_poison)}"
    )
    return Check(
        "no dead jobs but the poison ones, each of those dead", not (unintended or alive_poison), detail
    )


def dedup_keys(conn: psycopg.Connection, app: AppLoad) -> Check:
    """One job per soak dedup key (enqueued 2-3 times within a window) and per scheduler tick."""
    keys = list(app.dedup_refs)
    jobs_per_key = dict(
        conn.execute(
            "SELECT dedup_key, array_agg(id ORDER BY id) FROM jobs WHERE dedup_key = ANY(%s) GROUP BY 1",
            (keys,),
        ).fetchall()
    )
    twice = [(k, ids) for k, ids in jobs_per_key.items() if len(ids) > 1]
    split = [(k, sorted(refs)) for k, refs in app.dedup_refs.items() if len(refs) > 1]
    created_twice = [k for k, n in app.dedup_created.items() if n > 1]
    ticks = conn.execute(
        """SELECT dedup_key, count(*) FROM jobs WHERE dedup_key LIKE 'cron:%%'
            GROUP BY 1 HAVING count(*) > 1"""
    ).fetchall()
    tick_total = conn.execute("SELECT count(*) FROM jobs WHERE dedup_key LIKE 'cron:%%'").fetchone()[0]
    detail = (
        f"{len(keys):,} app keys, {app.calls['dedup']:,} enqueue calls; keys with more than one job "
        f"{_n(twice)}; keys whose calls returned different jobs {_n(split)}; created twice "
        f"{_n(created_twice)}; scheduler ticks {tick_total:,}, enqueued twice {_n(ticks)}"
    )
    return Check("no dedup key ran twice (ledger)", not (twice or split or created_twice or ticks), detail)


# -- soak_effects_by_attempt -- each app job's effects per attempt, with that attempt's record.
EFFECTS_BY_ATTEMPT = """
SELECT e.job_id, e.attempt, count(*) AS effects, a.outcome, split_part(a.worker_id, ':', 2) AS pid,
       j.actor, j.state
  FROM soak_effects e
  LEFT JOIN jobs j ON j.id = e.job_id
  LEFT JOIN job_attempts a ON a.job_id = e.job_id AND a.attempt = e.attempt
 GROUP BY e.job_id, e.attempt, a.outcome, a.worker_id, j.actor, j.state
"""

# -- soak_effect_missing -- succeeded app jobs without an effect of the attempt that succeeded.
EFFECT_MISSING = """
SELECT j.id FROM jobs j
 WHERE j.actor IN ('soak_work', 'soak_flaky') AND j.state = 'succeeded'
   AND NOT EXISTS (SELECT 1 FROM soak_effects e WHERE e.job_id = j.id AND e.attempt = j.attempts)
"""

# -- soak_lost_attempts -- attempts the lifeline or a shutdown cut short, with their worker's pid.
LOST_ATTEMPTS = """
SELECT job_id, attempt, outcome, split_part(worker_id, ':', 2) AS pid FROM job_attempts
 WHERE outcome IN ('lost', 'interrupted')
"""


def effects(conn: psycopg.Connection, kills: list[Kill]) -> tuple[Check, Check]:
    """(each app job's effect happened once, or twice only where a kill explains it;
    attempts cut short belong to killed processes)."""
    killed = {str(pid) for k in kills for pid in k.pids}
    rows = conn.execute(EFFECTS_BY_ATTEMPT).fetchall()
    same_attempt_twice = [(r[0], r[1], r[2]) for r in rows if r[2] > 1]
    explained = [r for r in rows if r[3] in ("lost", "interrupted") and r[4] in killed]
    unexplained = [(r[0], r[1], r[3], r[5], r[6]) for r in rows if r[3] != "succeeded" and r not in explained]
    missing = [r[0] for r in conn.execute(EFFECT_MISSING)]
    total = sum(r[2] for r in rows)
    first = Check(
        "each app job's effect happened once (kills explain any repeat)",
        not (same_attempt_twice or unexplained or missing),
        f"{total:,} effects; repeated by a killed attempt (at least once, expected) {len(explained)}; "
        f"same attempt twice {_n(same_attempt_twice)}; from an attempt neither killed nor succeeded "
        f"{_n(unexplained)}; succeeded without an effect {_n(missing)}",
    )
    lost = conn.execute(LOST_ATTEMPTS).fetchall()
    not_killed = [(job, attempt, outcome, pid) for job, attempt, outcome, pid in lost if pid not in killed]
    second = Check(
        "attempts recovered as lost/interrupted all ran on killed processes",
        not not_killed,
        f"{len(lost)} attempts cut short, {len(lost) - len(not_killed)} on killed processes; on "
        f"processes never killed (declared dead while alive?) {_n(not_killed)}",
    )
    return first, second


def notifications(
    conn: psycopg.Connection, notif: NotificationLoad, receipts: list[tuple[float, str]], kills: list[Kill]
) -> Check:
    """Every notification sent, one row per key, each HTTP delivery once (a repeat only across a kill)."""
    rows = conn.execute(
        "SELECT dedup_key, status FROM notification_queue WHERE dedup_key LIKE 'soak:notif:%%'"
    ).fetchall()
    statuses = dict(Counter(status for _, status in rows))
    keys = {key for key, _ in rows}
    sent = {key for key, status in rows if status == "sent"}
    by_key: dict[str, list[float]] = {}
    for at, idempotency_key in receipts:
        by_key.setdefault(idempotency_key.rsplit(":", 1)[0], []).append(at)
    repeated = {k: sorted(times) for k, times in by_key.items() if len(times) > 1}
    kill_times = [k.at for k in kills]
    across_kill = {k for k, t in repeated.items() if any(t[0] <= at <= t[-1] for at in kill_times)}
    unexplained = sorted(set(repeated) - across_kill)
    never_received = sorted((notif.http_keys & sent) - set(by_key))
    not_sent = {s: n for s, n in statuses.items() if s != "sent"}
    lost = sorted(notif.created - keys)
    ok = not (not_sent or lost or notif.repeats_accepted or unexplained or never_received or notif.errors)
    detail = (
        f"{len(notif.created):,} created ({len(notif.http_keys):,} also over HTTP), {notif.repeats} repeats "
        f"refused, {len(notif.repeats_accepted)} accepted; statuses {statuses}; rows missing {len(lost)}; "
        f"HTTP deliveries {len(receipts):,}, keys delivered twice {len(repeated)} "
        f"({len(across_kill)} across a kill, expected; not across a kill {_n(unexplained)}); "
        f"marked sent but never delivered {_n(never_received)}; enqueue errors {_n(notif.errors)}"
    )
    return Check("notifications: all sent, once per dedup key", ok, detail)


def payments(conn: psycopg.Connection, hooks: WebhookLoad) -> Check:
    """Shipments against the simulator's expected ledger, the reconciliation's drift check."""
    from demo.payments_simulator import mismatches
    from jobs import payments as pay

    wrong = mismatches(conn, hooks.expected_paid)
    drifting = [(d["shipment_id"], d["drift"]) for d in pay.drift(conn)]
    problems = pay.problem_events(conn)
    statuses = pay.count_by_status(conn)
    doubled = conn.execute(
        """SELECT count(*) FROM (SELECT idempotency_key FROM payment_transactions
                                  GROUP BY 1 HAVING count(*) > 1) d"""
    ).fetchone()[0]
    open_events = sum(n for s, n in statuses.items() if s in ("received", "processing"))
    bad_posts = {s: n for s, n in hooks.statuses.items() if s != 200}
    ok = not (wrong or drifting or problems or doubled or open_events or bad_posts or hooks.errors)
    detail = (
        f"{hooks.posted:,} callbacks posted ({hooks.unique_events:,} unique) for "
        f"{len(hooks.expected_paid):,} shipments; HTTP {dict(hooks.statuses)}; inbox {statuses}; "
        f"amount_paid != expected {_n(wrong)}; drift {_n(drifting)}; "
        f"problem events {len(problems)}; idempotency keys applied twice {doubled}; errors {_n(hooks.errors)}"
    )
    return Check("payments: every shipment's amount_paid = simulator's ledger, no drift", ok, detail)


def load_errors(app: AppLoad) -> Check:
    return Check(
        "the app's enqueues raised nothing",
        not app.errors,
        f"{sum(app.calls.values()):,} calls; errors {_n(app.errors)}",
    )
