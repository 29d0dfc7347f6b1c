"""The console's rollup (workers/stats.py) on real PostgreSQL: attempts counted per minute, queue
and actor, wait and run percentiles from its histograms, queued depth sampled, 15-minute and hourly
buckets folded from the minutes, jobs per state without a scan."""

from __future__ import annotations

import psycopg
import pytest

from workers import stats


def _job(
    conn: psycopg.Connection,
    actor: str,
    queue: str,
    state: str,
    *,
    wait_s: float = 0.0,
    runs=(),
    ago_s: int = 600,
) -> int:
    """A job enqueued `ago_s` ago whose attempts (run seconds, outcome) started `wait_s` after."""
    finished = state in ("succeeded", "dead", "cancelled")
    job_id = conn.execute(
        """INSERT INTO jobs (actor, queue, state, max_attempts, attempts, enqueued_at, eta, finished_at)
           VALUES (%s, %s, %s, 5, %s, now() - make_interval(secs => %s), now() - make_interval(secs => %s),
                   CASE WHEN %s THEN now() END) RETURNING id""",
        (actor, queue, state, len(runs), ago_s, ago_s, finished),
    ).fetchone()[0]
    for n, (run_s, outcome) in enumerate(runs, start=1):
        conn.execute(
            """INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome)
               VALUES (%(id)s, %(n)s, now() - make_interval(secs => %(ago)s - %(wait)s),
                       now() - make_interval(secs => %(ago)s - %(wait)s - %(run)s), %(outcome)s)""",
            {
                "id": job_id,
                "n": n,
                "ago": ago_s,
                "wait": wait_s + 60 * (n - 1),
                "run": run_s,
                "outcome": outcome,
            },
        )
    return job_id


def test_rollup_counts_percentiles_depth_and_folds(conn: psycopg.Connection) -> None:
    for _ in range(19):
        _job(conn, "send_email", "mail", "succeeded", wait_s=0.1, runs=[(0.05, "succeeded")])
    _job(conn, "send_email", "mail", "succeeded", wait_s=30, runs=[(2.0, "succeeded")])
    _job(conn, "charge", "payments", "dead", wait_s=1, runs=[(0.5, "failed"), (0.5, "failed")])
    for _ in range(3):
        _job(conn, "charge", "payments", "queued")
    # An attempt 3 days ago: another chunk of the first pass.
    _job(conn, "send_email", "mail", "succeeded", runs=[(0.05, "succeeded")], ago_s=3 * 86400)

    written = stats.roll_up(conn)
    assert written["60"] >= 2 and written["900"] >= 2 and written["3600"] >= 2

    hour = stats.read_range(conn, "1h")
    assert len(hour["points"]) == 60
    assert sum(p["succeeded"] for p in hour["points"]) == 20
    assert sum(p["failed"] for p in hour["points"]) == 2
    assert hour["points"][-1]["depth"] == 3  # sampled in the current minute
    mail = hour["by_queue"]["mail"]
    assert mail["succeeded"] == 20 and mail["failed"] == 0
    # 19 runs of 50 ms and one of 2 s: the median near 50 ms, the 95th near 2 s (within a fifth).
    assert mail["run_p50_ms"] == pytest.approx(50, rel=0.25)
    assert mail["run_p95_ms"] == pytest.approx(50, rel=0.25)
    assert hour["by_actor"]["send_email"]["wait_p50_ms"] == pytest.approx(100, rel=0.25)
    assert stats.read_range(conn, "1h", actor="charge")["by_actor"]["charge"]["run_p50_ms"] == pytest.approx(
        500, rel=0.25
    )
    only_charge = stats.read_range(conn, "1h", queue="payments")
    assert sum(p["failed"] for p in only_charge["points"]) == 2
    assert sum(p["succeeded"] for p in only_charge["points"]) == 0

    for range_key, count, succeeded in (("24h", 96, 20), ("7d", 168, 21)):
        folded = stats.read_range(conn, range_key)
        assert len(folded["points"]) == count
        assert sum(p["succeeded"] for p in folded["points"]) == succeeded, range_key
        assert folded["by_actor"]["charge"]["failed"] == 2

    # A second pass recounts the same minutes: nothing counted twice; a late attempt is taken in.
    _job(conn, "send_email", "mail", "succeeded", runs=[(0.05, "succeeded")], ago_s=120)
    stats.roll_up(conn)
    assert sum(p["succeeded"] for p in stats.read_range(conn, "24h")["points"]) == 21


def test_state_counts_without_a_scan_follow_the_ledger(conn: psycopg.Connection) -> None:
    states = ("queued", "succeeded", "dead")
    for _ in range(4):
        _job(conn, "a", "default", "succeeded", runs=[(0.01, "succeeded")])
    _job(conn, "a", "default", "dead", runs=[(0.01, "failed")])
    assert stats.state_counts(conn, states) == {"queued": 0, "succeeded": 4, "dead": 1}  # no snapshot yet
    stats.roll_up(conn)
    _job(conn, "a", "default", "succeeded", runs=[(0.01, "succeeded")])  # after the snapshot
    _job(conn, "a", "default", "queued")
    assert stats.state_counts(conn, states) == {"queued": 1, "succeeded": 5, "dead": 1}
    assert conn.execute("SELECT jobs FROM job_state_counts WHERE state = 'succeeded'").fetchone()[0] == 4


def test_percentile_of_a_histogram() -> None:
    assert stats.percentile_ms([], 0.5) is None
    assert stats.percentile_ms([3], 0.5) == 0.5
    hist = stats.add_hist([0, 1], [0, 0, 0, 9])
    assert hist == [0, 1, 0, 9]
    assert stats.percentile_ms(hist, 0.05) == pytest.approx(1.5**0.5)
    assert stats.percentile_ms(hist, 0.95) == pytest.approx(1.5**2.5)


def test_the_maintenance_job_keeps_the_rollup(conn: psycopg.Connection) -> None:
    from jobs import registry
    from workers import maintenance

    entry = next(e for e in registry.schedule() if e.name == "ledger_stats")
    assert (entry.actor, entry.trigger) == ("ledger_stats", "every 1m")
    _job(conn, "a", "default", "succeeded", runs=[(0.01, "succeeded")], ago_s=60)
    maintenance.ledger_stats.fn()  # what a worker runs for the schedule's tick
    assert conn.execute("SELECT sum(succeeded) FROM job_stats WHERE grain_s = 60").fetchone()[0] == 1
