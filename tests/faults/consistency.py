"""The fault suite's after-check: whatever the fault was, the database must show that nothing was
lost and that no effect happened twice.

`check_consistency(url, ...)` runs every check that applies to what the database holds, collects
every problem it finds and fails with the whole list:

- the ledger: every job is final (succeeded, dead, cancelled); its attempts are recorded 1..n, a
  succeeded job has exactly one succeeded attempt (its last), no other job has one;
- the test actors' `effects` (tests/actors.py): exactly the counts the test expects, and for the
  actors named in `effect_actors` one effect row per succeeded job and none for the others;
- notifications: every row sent or dead; a sent row went out on all its channels; the provider
  received each sent row's Idempotency-Key, nothing else, and repeats only within `resends`;
- payments: every event final and its job's state agrees with it; no shipment's `amount_paid`
  drifted from its payments; a payment is applied once per idempotency key; the plan's amounts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from decimal import Decimal

import psycopg

FINAL_JOB_STATES = ("succeeded", "dead", "cancelled")
FINAL_NOTIFICATION_STATES = ("sent", "dead")
# Event statuses and the state their job ends in.
PAYMENT_EVENT_JOB_STATE = {
    "applied": "succeeded",
    "ignored": "succeeded",
    "unmatched": "dead",
    "rejected": "dead",
}
# Problems listed per check before "... and N more".
SHOWN = 10


def check_consistency(
    database_url: str,
    *,
    effects: Mapping[str, int] | None = None,
    effect_actors: Sequence[str] = (),
    receipts: Mapping[str, Sequence[str]] | None = None,
    resends: int = 0,
    expected_paid: Mapping[uuid.UUID, Decimal] | None = None,
) -> dict[str, int]:
    """Fail with every problem found; returns the jobs counted by state.

    `effects`: {key: count} of the `effects` table, all of it. `effect_actors`: actors whose job
    writes one effect row (with its job id) when it succeeds, and none otherwise. `receipts`:
    {channel: Idempotency-Keys its provider accepted, repeats included}; `resends`: how many
    repeats a kill may explain (the requests in flight at that moment). `expected_paid`: the
    payment plan's amount_paid per shipment."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        problems = [
            *ledger_problems(conn),
            *effect_problems(conn, effects, effect_actors),
            *notification_problems(conn, receipts, resends),
            *payment_problems(conn, expected_paid),
        ]
        states = dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())
    assert not problems, "inconsistent after the fault:\n" + "\n".join(problems)
    return states


def _listed(what: str, items: Sequence[object]) -> list[str]:
    if not items:
        return []
    more = f" ... and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return [f"{what} ({len(items)}): {', '.join(map(str, items[:SHOWN]))}{more}"]


def ledger_problems(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute(
        """SELECT j.id, j.actor, j.state, j.attempts, j.max_attempts, j.last_error,
                  coalesce(array_agg(a.attempt ORDER BY a.attempt) FILTER (WHERE a.job_id IS NOT NULL), '{}'),
                  coalesce(array_agg(a.outcome ORDER BY a.attempt) FILTER (WHERE a.job_id IS NOT NULL), '{}')
             FROM jobs j LEFT JOIN job_attempts a ON a.job_id = j.id
            GROUP BY j.id ORDER BY j.id"""
    ).fetchall()
    open_jobs, gaps, wrong_outcome, over_budget = [], [], [], []
    for job_id, actor, state, attempts, max_attempts, last_error, numbers, outcomes in rows:
        label = f"{job_id} {actor}"
        if state not in FINAL_JOB_STATES:
            open_jobs.append(f"{label} {state} ({last_error or 'no error'})")
            continue
        # A cancelled job's running attempt is never recorded (its outcome is ignored).
        expected = list(range(1, attempts + 1))
        if numbers != expected and not (state == "cancelled" and numbers == expected[:-1]):
            gaps.append(f"{label}: attempts {attempts}, recorded {numbers}")
        succeeded = outcomes.count("succeeded")
        if (state == "succeeded") != (succeeded == 1 and outcomes[-1] == "succeeded") or succeeded > 1:
            wrong_outcome.append(f"{label} {state}: outcomes {outcomes}")
        if attempts > max_attempts:
            over_budget.append(f"{label}: {attempts} attempts of {max_attempts}")
    return [
        *_listed("jobs not in a final state", open_jobs),
        *_listed("jobs whose attempts are not all recorded", gaps),
        *_listed("jobs whose recorded outcomes disagree with their state", wrong_outcome),
        *_listed("jobs with more attempts than allowed", over_budget),
    ]


def effect_problems(
    conn: psycopg.Connection, expected: Mapping[str, int] | None, actors: Sequence[str]
) -> list[str]:
    if expected is None and not actors:
        return []
    if conn.execute("SELECT to_regclass('effects')").fetchone()[0] is None:
        return ["no effects table, but effects were expected"]
    problems = []
    if expected is not None:
        counts = dict(conn.execute("SELECT key, count(*) FROM effects GROUP BY key").fetchall())
        wrong = [
            f"{k}: {counts.get(k, 0)} (expected {n})"
            for k, n in sorted(expected.items())
            if counts.get(k) != n
        ]
        unexpected = [f"{k}: {n}" for k, n in sorted(counts.items()) if k not in expected]
        problems += _listed("effects not happening the expected number of times", wrong)
        problems += _listed("effects nobody expected", unexpected)
    if actors:
        # With each job's attempts, so that a failure says how the job came to run again.
        rows = conn.execute(
            """SELECT j.id, j.actor, j.state, count(e.id),
                      (SELECT string_agg(format('%%s %%s %%s', a.attempt, a.outcome,
                                                left(coalesce(a.error, ''), 120)), '; '
                                         ORDER BY a.attempt)
                         FROM job_attempts a WHERE a.job_id = j.id)
                 FROM jobs j LEFT JOIN effects e ON e.job_id = j.id
                WHERE j.actor = ANY(%s)
                GROUP BY j.id
               HAVING count(e.id) <> (j.state = 'succeeded')::int
                ORDER BY j.id""",
            (list(actors),),
        ).fetchall()
        disagree = [f"{i} {a} {s}: {n} effect rows (attempts: {h})" for i, a, s, n, h in rows]
        problems += _listed("jobs whose effects disagree with the ledger (1 per success)", disagree)
    return problems


def notification_problems(
    conn: psycopg.Connection, receipts: Mapping[str, Sequence[str]] | None, resends: int
) -> list[str]:
    rows = conn.execute(
        """SELECT queue_id, dedup_key, status, coalesce(send_via, ARRAY['in_app']::varchar[]),
                  coalesce(channels_done, '{}'), last_error
             FROM notification_queue ORDER BY queue_id"""
    ).fetchall()
    if not rows and not receipts:
        return []
    open_rows = [
        f"{q} {k} {s} ({e or 'no error'})" for q, k, s, _, _, e in rows if s not in FINAL_NOTIFICATION_STATES
    ]
    partial = [f"{q} {k}: via {v}, done {d}" for q, k, s, v, d, _ in rows if s == "sent" and set(v) - set(d)]
    problems = _listed("notifications neither sent nor dead", open_rows)
    problems += _listed("notifications marked sent without all their channels", partial)
    repeats = 0
    for channel, received in (receipts or {}).items():
        sent = {f"{k}:{channel}" for _, k, s, v, _, _ in rows if s == "sent" and channel in v}
        known = {f"{k}:{channel}" for _, k, _, v, _, _ in rows if channel in v}
        got = Counter(received)
        problems += _listed(
            f"sent notifications the {channel} provider never received", sorted(sent - set(got))
        )
        problems += _listed(f"{channel} sends of no notification", sorted(set(got) - known))
        repeats += sum(n - 1 for n in got.values())
    if repeats > resends:
        problems.append(
            f"notifications sent more than once per dedup key: {repeats} repeats (at most {resends})"
        )
    return problems


def payment_problems(
    conn: psycopg.Connection, expected_paid: Mapping[uuid.UUID, Decimal] | None
) -> list[str]:
    events = conn.execute(
        """SELECT e.id, e.provider, e.event_id, e.status,
                  (SELECT j.state FROM jobs j
                    WHERE j.dedup_key = 'payment-event:' || e.provider || ':' || e.event_id
                    ORDER BY j.id DESC LIMIT 1)
             FROM payment_events e ORDER BY e.id"""
    ).fetchall()
    if not events and expected_paid is None:
        return []
    from demo.payments_simulator import mismatches
    from jobs.payments import drift

    open_events = [f"{i} {p}:{e} {s}" for i, p, e, s, _ in events if s not in PAYMENT_EVENT_JOB_STATE]
    disagree = [
        f"{i} {p}:{e} {s}, its job {js}"
        for i, p, e, s, js in events
        if s in PAYMENT_EVENT_JOB_STATE and js is not None and js != PAYMENT_EVENT_JOB_STATE[s]
    ]  # a job of its own: the one-job-per-event path (batches have none)
    twice = conn.execute(
        """SELECT idempotency_key, count(*) FROM payment_events
            WHERE status = 'applied' AND event_type = 'payment.succeeded'
            GROUP BY 1 HAVING count(*) > 1"""
    ).fetchall()
    drifting = [
        f"{r['shipment_id']}: paid {r['amount_paid']}, payments say {r['expected']}" for r in drift(conn)
    ]
    problems = _listed("payment events not final", open_events)
    problems += _listed("payment events whose job disagrees", disagree)
    problems += _listed("payments applied more than once per idempotency key", twice)
    problems += _listed("shipments whose amount_paid drifted from their payments", drifting)
    if expected_paid is not None:
        problems += _listed(
            "shipments not paid as planned (id, expected, actual)", mismatches(conn, expected_paid)
        )
    return problems
