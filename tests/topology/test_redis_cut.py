"""A host cut off from Redis, and only from Redis, in the middle of a stream of jobs.

The network (tests/topology/network.py): a bridge with PostgreSQL and Redis on two addresses of
their own, three worker hosts in namespaces of their own. The cut is an `unreachable` route to the
Redis address inside one host's namespace: its consumer and relay lose Redis, its heartbeat (to
PostgreSQL) goes on, so the lifeline rightly leaves its claims alone.

What it proves: the jobs keep flowing through the other two hosts while the cut lasts; nothing is
lost (every job ends succeeded, each effect happens once: the ledger's claims keep a message the
cut host fetched from running twice); and once the network heals the host consumes again: it
alone consumes the `other` queue, whose jobs, enqueued during the cut, wait in Redis and the
ledger until it comes back.
"""

from __future__ import annotations

import pytest

from tests.faults.consistency import check_consistency
from tests.topology.conftest import Cluster
from tests.topology.views import all_in, client_addresses, held_by, states, succeeded_by
from tests.topology.waiting import wait_until
from workers import JobSpec, enqueue_many

pytestmark = pytest.mark.slow


@pytest.mark.timeout(90)
def test_cut_from_redis_others_carry_the_flow_and_the_host_resumes_after_healing(cluster: Cluster) -> None:
    cut_host, *others = cluster.hosts
    db = cluster.database_url
    cut = cluster.start_worker(cut_host, queues=["default", "other"])
    rest = [cluster.start_worker(h, queues=["default"]) for h in others]
    ids = cluster.wait_ready(cut, *rest)
    cut_id = ids[cut]
    # The network is real: each host's sessions come from its own namespace's address.
    wait_until(
        lambda: client_addresses(db) >= {h.address for h in cluster.hosts},
        10,
        "sessions from every host's address",
        cluster.report,
    )

    before = [
        r.id for r in enqueue_many([JobSpec("step", [f"before-{i}"], {"seconds": 0.3}) for i in range(30)])
    ]
    wait_until(
        lambda: list(succeeded_by(db, before).values()).count(cut_id) >= 2 and held_by(db, before, cut_id),
        20,
        "the host to take part in the flow, holding jobs",
        cluster.report,
    )
    cut_host.cut(cluster.redis_address)
    during = [r.id for r in enqueue_many([JobSpec("remember", [f"during-{i}"]) for i in range(30)])]
    waiting = [r.id for r in enqueue_many([JobSpec("on_other_queue", [f"other-{i}"]) for i in range(3)])]
    wait_until(lambda: all_in(db, before + during, "succeeded"), 30, "the flow to go on", cluster.report)
    assert cut_id not in succeeded_by(db, during).values()
    # The cut lasts until both of the host's consumers gave up their stalled connections (Redis
    # calls time out after 10 s), so that healing has to bring back broken consumers.
    for queue in ("default", "other"):
        wait_until(
            lambda q=queue: cut.log_count(f"ConsumerThread({q}) ", "connection error"),
            20,
            f"the {queue} consumer to lose Redis",
            cluster.report,
        )
    assert states(db, waiting) == {"queued": 3}

    cut_host.heal()
    wait_until(
        lambda: all_in(db, waiting, "succeeded"), 30, "the healed host to consume again", cluster.report
    )
    assert set(succeeded_by(db, waiting).values()) == {cut_id}
    assert all(w.alive() for w in (cut, *rest))
    keys = (
        [f"before-{i}" for i in range(30)]
        + [f"during-{i}" for i in range(30)]
        + [f"other-{i}" for i in range(3)]
    )
    check_consistency(
        db, effects=dict.fromkeys(keys, 1), effect_actors=["step", "remember", "on_other_queue"]
    )
