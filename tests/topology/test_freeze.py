"""A host frozen (SIGSTOP on its worker's process group) past SKYPORT_WORKER_DEAD_AFTER_S while it
holds jobs, recovered elsewhere, then thawed (SIGCONT).

The network (tests/topology/network.py): a bridge with PostgreSQL and Redis on addresses of their
own, each worker host in a namespace of its own; nothing is cut here: the frozen host stops
everything at once (its heartbeat, its threads, its consumer) and comes back with its connections
and its claims intact, as a host that stalled (a VM paused, swapping, a long GC) would.

What it proves: the other host's lifeline recovers every job the frozen one held (outcome `lost`)
and runs it to success; after the thaw the frozen worker's stale state changes nothing in the
ledger: its late outcomes are refused (row for row the ledger is as the other host left it), and
with claims it fetched but never began, nothing runs twice to success that the ledger could stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import redis

from tests.faults.consistency import check_consistency
from tests.topology.conftest import Cluster
from tests.topology.views import all_in, effect_counts, held_by, ledger_rows, outcomes
from tests.topology.waiting import wait_until
from workers import JobSpec, enqueue_many

pytestmark = pytest.mark.slow


@dataclass
class Thawed:
    jobs: list[int]
    began: list[str]  # keys of the jobs whose first run began on the frozen host before it froze
    waiting: list[str]  # keys of the jobs it had claimed (fetched) without beginning them


def freeze_recover_thaw(cluster: Cluster, count: int) -> Thawed:
    """`count` jobs claimed by a host on 2 threads (so `count - 2` wait in its prefetch), the host
    frozen, the jobs recovered and run by another host, the frozen host thawed and left to do
    whatever its stale state makes it do; returns which jobs had begun."""
    frozen_host, other_host = cluster.hosts[:2]
    db = cluster.database_url
    frozen = cluster.start_worker(frozen_host, threads=2)
    frozen_id = cluster.wait_ready(frozen)[frozen]
    keys = [f"frozen-{i}" for i in range(count)]
    jobs = [r.id for r in enqueue_many([JobSpec("first_run_naps", [k], {"seconds": 2}) for k in keys])]
    wait_until(
        lambda: held_by(db, jobs, frozen_id) == jobs and len(effect_counts(db)) == min(count, 2),
        20,
        "the host to claim every job and begin two",
        cluster.report,
    )
    frozen.freeze()
    began = sorted(k.removesuffix(":start") for k in effect_counts(db))
    other = cluster.start_worker(other_host, threads=2)
    other_id = cluster.wait_ready(other)[other]
    wait_until(lambda: all_in(db, jobs, "succeeded"), 30, "the jobs to be recovered and run", cluster.report)
    assert outcomes(db, jobs) == {j: [(frozen_id, "lost"), (other_id, "succeeded")] for j in jobs}
    before = ledger_rows(db, jobs)

    frozen.thaw()
    # Its two interrupted runs finish and their outcomes are refused; everything it fetched is
    # acknowledged (run or skipped), so Redis holds no message of the queue any more.
    client = redis.Redis.from_url(cluster.servers.redis.url)
    wait_until(
        lambda: (
            frozen.ignored_outcomes() >= len(began) and client.hlen(f"{cluster.namespace}:default.msgs") == 0
        ),
        30,
        "the thawed host to settle",
        cluster.report,
    )
    client.close()
    assert frozen.alive() and other.alive()
    assert ledger_rows(db, jobs) == before
    return Thawed(jobs, began, sorted(set(keys) - set(began)))


@pytest.mark.timeout(60)
def test_frozen_host_running_jobs_recovered_and_its_late_outcomes_change_nothing(cluster: Cluster) -> None:
    thawed = freeze_recover_thaw(cluster, count=2)
    assert len(thawed.began) == 2 and not thawed.waiting
    # Each job's first run began on the frozen host and ended after the thaw: the ledger could not
    # stop it (it was running), but refused its outcome; the second run was the other host's.
    check_consistency(cluster.database_url, effects={f"{k}:start": 2 for k in thawed.began})


class RanAgain(AssertionError):
    """A job the thawed worker had claimed but not begun ran again after it was recovered."""


@pytest.mark.timeout(60)
def test_frozen_host_claimed_jobs_do_not_run_again_after_the_thaw(cluster: Cluster) -> None:
    thawed = freeze_recover_thaw(cluster, count=6)
    assert len(thawed.began) == 2 and len(thawed.waiting) == 4
    # The jobs it had fetched but not begun were recovered and run elsewhere: the ledger knows
    # they are no longer this worker's, so the thawed worker must not begin them.
    db = cluster.database_url
    counts = effect_counts(db)
    again = {k: counts.get(f"{k}:start") for k in thawed.waiting if counts.get(f"{k}:start") != 1}
    if again:
        raise RanAgain(f"claimed, recovered and run elsewhere, then run again after the thaw: {again}")
    expected = {f"{k}:start": 2 for k in thawed.began} | {f"{k}:start": 1 for k in thawed.waiting}
    check_consistency(db, effects=expected)
