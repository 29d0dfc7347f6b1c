"""A host cut off from PostgreSQL, and only from PostgreSQL, while its jobs run.

The network (tests/topology/network.py): a bridge with PostgreSQL and Redis on two addresses of
their own, each worker host in its own namespace. The cut is an `unreachable` route to the
PostgreSQL address inside the host's namespace: its heartbeat fails, Redis still answers.

What it proves: the lifeline of another host sees the silent worker and recovers its running jobs
(outcome `lost`), which that host then runs to success; when the network heals, the cut-off
worker's late writes (the success of one job, the failure of the other) arrive and change
nothing: they name the worker and attempt that no longer hold the job, so the ledger keeps the
other host's outcome, row for row.
"""

from __future__ import annotations

import pytest

from tests.faults.consistency import check_consistency
from tests.topology.conftest import Cluster
from tests.topology.views import all_in, effect_counts, held_by, ledger_rows, outcomes
from tests.topology.waiting import wait_until
from workers import JobSpec, enqueue_many

pytestmark = pytest.mark.slow


@pytest.mark.timeout(60)
def test_cut_from_postgres_jobs_recovered_elsewhere_and_late_writes_change_nothing(cluster: Cluster) -> None:
    cut_host, other_host = cluster.hosts[:2]
    db = cluster.database_url
    cut = cluster.start_worker(cut_host)
    cut_id = cluster.wait_ready(cut)[cut]
    refs = enqueue_many(
        [
            JobSpec("first_run_naps", ["succeeds-late"], {"seconds": 3}),
            JobSpec("first_run_naps", ["fails-late"], {"seconds": 3, "fail": True}),
        ]
    )
    jobs = [r.id for r in refs]
    wait_until(
        lambda: held_by(db, jobs, cut_id) == jobs and len(effect_counts(db)) == 2,
        20,
        "both jobs to start on the first host",
        cluster.report,
    )

    cut_host.cut(cluster.postgres_address)
    other = cluster.start_worker(other_host)
    other_id = cluster.wait_ready(other)[other]
    wait_until(lambda: all_in(db, jobs, "succeeded"), 30, "the other host to run both jobs", cluster.report)
    before = ledger_rows(db, jobs)
    assert outcomes(db, jobs) == {j: [(cut_id, "lost"), (other_id, "succeeded")] for j in jobs}

    assert cut.ignored_outcomes() == 0  # nothing of the cut host's has reached the ledger yet
    cut_host.heal()
    # Both late writes arrive (the success group-committed, the failure retried) and are refused.
    wait_until(
        lambda: cut.ignored_outcomes() == 2, 30, "the cut host's late outcomes to be refused", cluster.report
    )
    assert ledger_rows(db, jobs) == before
    assert cut.alive() and other.alive()
    # Each first run began on the cut host, each job ran again (at once) on the other one.
    check_consistency(db, effects={"succeeds-late:start": 2, "fails-late:start": 2})
