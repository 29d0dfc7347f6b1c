"""Payment events processed by a host that is cut off from PostgreSQL in the middle of applying one.

The network (tests/topology/network.py): a bridge with PostgreSQL and Redis on two addresses of
their own, each worker host in its own namespace; the cut is an `unreachable` route to the
PostgreSQL address inside one host's namespace. The events are received into the inbox from the
root namespace, as the web process would (payments.receive_many: the rows and their jobs in one
transaction, published by the workers' relays).

How the cut lands mid-payment: the test holds payment_transactions in SHARE mode, so the host's
batch waits inside PostgreSQL to write its payment rows, holding its shipments' locks; the host is
cut, then the lock released: the host's session writes and is left open, its next statement stuck on
the host's side of the cut.

What it proves: the other host's lifeline recovers the cut host's jobs; when the network heals,
the cut host's open transaction and its late outcome arrive (the outcome refused), and every event
is processed: each payment applied once per idempotency key, every shipment paid as planned (no
drift), every event final and agreeing with its job, no job with two successes. The second test
asks that the other shipments' events go on while the cut lasts: the payment's transaction may not
sit idle with the shipment's lock for more than 5 s (jobs/payments/batch.py, LOCK_IDLE_TIMEOUT), so
the server ends the cut host's orphaned transaction and releases its locks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import psycopg
import pytest

from demo.payments_simulator import Plan, create_demo_shipments, plan_events
from jobs.payments.events import parse_event
from jobs.payments.inbox import receive_many
from tests.faults.consistency import check_consistency
from tests.support import scalar
from tests.topology.conftest import Cluster
from tests.topology.servers import HostWorker
from tests.topology.waiting import wait_until

pytestmark = pytest.mark.slow

# How long the other shipments' events may wait while a cut host holds one shipment's locks (the
# lifeline has already recovered the cut host's jobs when this starts).
STALL_S = 12


def receive(database_url: str, bodies: list[dict]) -> list[int]:
    """The events into the inbox (duplicates change nothing); returns the new events' ids."""
    raws = [json.dumps(b).encode() for b in bodies]
    with psycopg.connect(database_url, autocommit=True) as conn:
        got = receive_many(conn, [("acme", parse_event(raw), raw) for raw in raws])
    return [r.event_pk for r in got if r.event_pk is not None]


def lock_waiters(database_url: str, address: str) -> int:
    """Sessions from `address` waiting for a lock."""
    return scalar(
        database_url,
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND client_addr = %s::inet AND wait_event_type = 'Lock'",
        (address,),
    )


def open_events(database_url: str, shipment: object | None = None) -> int:
    """Events not final yet (of every shipment but `shipment`, when given)."""
    return scalar(
        database_url,
        "SELECT count(*) FROM payment_events WHERE status IN ('received', 'processing')"
        " AND shipment_id IS DISTINCT FROM %s",
        (shipment,),
    )


@dataclass
class MidPayment:
    plan: Plan
    events: list[int]
    blocked: object  # the shipment whose payment the cut host was in the middle of
    cut: HostWorker
    other: HostWorker


def cut_mid_payment(cluster: Cluster) -> MidPayment:
    """The first host cut off while its session holds a shipment's locks mid-payment; the second
    host started, its lifeline having recovered every job the first one held."""
    cut_host, other_host = cluster.hosts[:2]
    db = cluster.database_url
    with psycopg.connect(db, autocommit=True) as conn:
        shipments = create_demo_shipments(conn, 3, seed=7)
    plan = plan_events(shipments, events=15, duplicates=0.2, out_of_order=0.2, refunds=0, seed=7)
    blocked = shipments[0][0]
    cut = cluster.start_worker(cut_host)
    cut_id = cluster.wait_ready(cut)[cut]
    with psycopg.connect(db) as locker:
        locker.execute("LOCK TABLE payment_transactions IN SHARE MODE")
        events = receive(db, plan.bodies)
        wait_until(
            lambda: lock_waiters(db, cut_host.address),
            20,
            "the host to wait to write payment rows",
            cluster.report,
        )
        cut_host.cut(cluster.postgres_address)
        locker.rollback()  # the cut host's session takes the locks; its next statement cannot come
    assert len(events) == plan.unique_events
    other = cluster.start_worker(other_host)
    cluster.wait_ready(other)
    lost = "SELECT count(*) FROM job_attempts WHERE worker_id = %s AND outcome = 'lost'"
    held = "SELECT count(*) FROM jobs WHERE worker_id = %s AND state = 'running'"
    wait_until(
        lambda: scalar(db, lost, (cut_id,)) > 0 and scalar(db, held, (cut_id,)) == 0,
        30,
        "the other host's lifeline to recover the cut host's jobs",
        cluster.report,
    )
    return MidPayment(plan, events, blocked, cut, other)


def finish(cluster: Cluster, scenario: MidPayment) -> None:
    """Heal the network; every event processed, then the after-check."""
    db = cluster.database_url
    cluster.network.heal_all()
    wait_until(
        lambda: (
            open_events(db) == 0 and scalar(db, "SELECT count(*) FROM jobs WHERE finished_at IS NULL") == 0
        ),
        40,
        "every event to be processed",
        cluster.report,
    )
    # The cut host's late outcome (of the payment it was in the middle of) arrived, and was refused.
    wait_until(
        lambda: scenario.cut.ignored_outcomes() >= 1, 20, "the late outcome to be refused", cluster.report
    )
    assert scenario.cut.alive() and scenario.other.alive()
    # Each payment applied once per idempotency key, as planned, no drift; events and jobs agree.
    check_consistency(db, expected_paid=scenario.plan.expected_paid)


@pytest.mark.timeout(60)
def test_payments_through_a_host_cut_mid_payment_are_applied_once(cluster: Cluster) -> None:
    finish(cluster, cut_mid_payment(cluster))


class Stalled(AssertionError):
    """The other hosts stopped processing events while the cut lasted."""


@pytest.mark.timeout(60)
def test_a_host_cut_mid_payment_does_not_stall_the_other_shipments(cluster: Cluster) -> None:
    scenario = cut_mid_payment(cluster)
    db = cluster.database_url
    try:
        wait_until(
            lambda: open_events(db, scenario.blocked) == 0,
            STALL_S,
            "the other shipments' events to be processed while the cut lasts",
            cluster.report,
        )
    except AssertionError as exc:
        raise Stalled(str(exc)) from None
    finish(cluster, scenario)
