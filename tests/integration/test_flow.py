"""Flow control's pieces on a real database: rate schedules (reserve, take, hold-off, prune), the
rules, and enqueue's checks of priority and concurrency keys."""

from __future__ import annotations

import types

import psycopg
import pytest

import tests.actors  # noqa: F401 - the flow actors
from workers import EnqueueError, enqueue, flow


def test_reserved_starts_are_evenly_spaced_and_shared(conn: psycopg.Connection) -> None:
    rate = flow.parse_rate("10/s")
    first = [wait for _, wait in flow.rate_reserve(conn, "t:a", rate, 3)]
    then = [wait for _, wait in flow.rate_reserve(conn, "t:a", rate, 2)]  # another caller, later
    assert first[0] == 0.0
    assert [round(w, 1) for w in first[1:] + then] == [0.1, 0.2, 0.3, 0.4]
    assert flow.rate_reserve(conn, "t:other", rate)[0][1] == 0.0  # each key its own schedule


def test_take_waits_for_a_hold_off_and_refuses_a_start_too_far(database_url: str, conn) -> None:
    flow.rate_hold_off(conn, "notify:sms", 5.0)  # a provider's 429 with Retry-After: 5
    assert flow.rate_take("notify:sms", None, max_wait_s=1.0) is None  # too far: nothing reserved
    wait = flow.rate_take("notify:sms", None, max_wait_s=10.0)
    assert wait is not None and 4.0 < wait <= 5.0
    assert flow.rate_take("notify:push", flow.parse_rate("2/s"), max_wait_s=10.0) == 0.0


def test_idle_rate_schedules_are_pruned(conn: psycopg.Connection) -> None:
    flow.rate_reserve(conn, "t:idle", flow.parse_rate("1/s"))
    flow.rate_reserve(conn, "t:busy", flow.parse_rate("1/s"))
    conn.execute("UPDATE flow_rates SET next_at = now() - interval '2 hours' WHERE key = 't:idle'")
    assert flow.prune_rates(conn) == 1
    assert conn.execute("SELECT array_agg(key) FROM flow_rates").fetchone()[0] == ["t:busy"]


@pytest.mark.parametrize(
    ("text", "count", "period_s"),
    [
        ("10/s", 10, 1.0),
        ("600/m", 600, 60.0),
        ("5/2s", 5, 2.0),
        ("20/0.5s", 20, 0.5),
        ("1000/h", 1000, 3600.0),
    ],
)
def test_rates_parse(text: str, count: int, period_s: float) -> None:
    assert flow.parse_rate(text) == flow.Rate(count, period_s)


@pytest.mark.parametrize(
    "text",
    [
        "10",
        "ten/s",
        "10/fortnight",
        "0/s",
        "10/0s",
        "-1/s",
        "",
        "10/xyz",
        "9" * 400 + "/s",
        "1/" + "9" * 400 + "h",
    ],
)
def test_bad_rates_are_refused_naming_the_field(text: str) -> None:
    with pytest.raises(flow.FlowError) as refused:
        flow.parse_rate(text)
    assert refused.value.field == "rate_limit"


def test_enqueue_checks_priority_and_stores_the_concurrency_key(conn: psycopg.Connection) -> None:
    for bad in (10, -1, True, "1", 1.5):
        with pytest.raises(EnqueueError) as refused:
            enqueue("remember", ["x"], priority=bad)
        assert refused.value.field == "priority"
    ref = enqueue("per_shipment", ["ship-7", 0.0], priority=3)
    assert conn.execute("SELECT priority, flow_key FROM jobs WHERE id = %s", (ref.id,)).fetchone() == (
        3,
        "ship-7",
    )
    assert enqueue("remember", ["y"]).id  # priority 0 by default
    assert conn.execute("SELECT count(*) FROM jobs WHERE priority = 0").fetchone()[0] == 1


def test_a_pause_and_its_resume_are_read_by_the_rules(conn: psycopg.Connection) -> None:
    known = {"default", "flow"}
    flow.pause(conn, "queue", "default", "ops:ann", "deploy", known)
    flow.set_limit(conn, "queue", "flow", 2, "ops:ann", known)
    rules = flow.read_rules(conn)
    assert rules.paused("default", "anything") and not rules.paused("flow", "anything")
    assert rules.queue_limits == {"flow": 2}
    assert flow.resume(conn, "queue", "default", "ops:ann", known) == 0
    assert flow.resume(conn, "queue", "default", "ops:ann", known) == -1  # was not paused
    with pytest.raises(flow.FlowError) as refused:
        flow.pause(conn, "queue", "nope", "ops:ann", None, known)
    assert refused.value.field == "name"


@pytest.mark.parametrize("concurrency", [0, -1, True, 1.5, "3", flow.MAX_CONCURRENCY + 1])
def test_an_actor_declared_with_a_bad_concurrency_is_refused(concurrency: object) -> None:
    declared = types.SimpleNamespace(actor_name=f"bad_{concurrency!r}", options={"concurrency": concurrency})
    with pytest.raises(flow.FlowError) as refused:
        flow.actor_flow(declared)
    assert refused.value.field == "concurrency"
