"""Payment webhooks end to end: a real `skyport web`, real workers, the simulator command
(`python -m demo simulate-payments`), and a worker killed with kill -9 in the middle of processing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from decimal import Decimal

import httpx
import psycopg
import pytest

from demo.payments_simulator import create_demo_shipments, mismatches, plan_events, post_events
from tests.faults.consistency import check_consistency
from tests.support import REPO, SkyportProcess, WorkerProcess, free_port, job_states, scalar, wait_for

pytestmark = pytest.mark.slow

SECRET = "whsec_e2e"


@pytest.fixture
def env(database_url: str, redis_namespace: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", SECRET)
    # A retried job's message consumed before the relay commits is skipped by the runtime and only
    # published again after SKYPORT_REPUBLISH_AFTER_S (300 s by default): keep that short here.
    return {"PAYMENT_WEBHOOK_SECRET": SECRET, "SKYPORT_SECRET_KEY": "e2e", "SKYPORT_REPUBLISH_AFTER_S": "2"}


def start_web(env: dict[str, str]) -> tuple[SkyportProcess, str]:
    port = free_port()
    web = SkyportProcess(["web", "--port", str(port)], env).start()
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 30, 0.2, what=f"the web process\n{web.output()}")
    return web, url


def open_events(database_url: str) -> int:
    return scalar(
        database_url, "SELECT count(*) FROM payment_events WHERE status IN ('received', 'processing')"
    )


def deliver_concurrently(url: str, body: dict, times: int) -> list[str]:
    """The same body posted `times` times at once, one thread each; each delivery's statuses."""
    barrier = threading.Barrier(times)
    answers: list[str] = []

    def deliver() -> None:
        barrier.wait()
        stats = post_events(url, "acme", SECRET, [body], concurrency=1)
        answers.append(str(stats.statuses))

    threads = [threading.Thread(target=deliver) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers


def simulate_payments(env: dict[str, str], *args: str, timeout_s: float = 90) -> tuple[int, str]:
    """`python -m demo simulate-payments ARGS` from the repository root: (exit code, output)."""
    done = subprocess.run(
        [sys.executable, "-m", "demo", "simulate-payments", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    return done.returncode, done.stdout + done.stderr


def test_same_event_twenty_times_concurrently_then_the_simulator(
    database_url: str, env: dict[str, str]
) -> None:
    web, url = start_web(env)
    with web, WorkerProcess(threads=4, env=env) as worker:
        with psycopg.connect(database_url, autocommit=True) as conn:
            sid = create_demo_shipments(conn, 1, seed=1)[0][0]
        body = plan_events([(sid, Decimal("1000.00"), Decimal("0"))], events=1, duplicates=0, seed=5).bodies[
            -1
        ]
        body = {**body, "type": "payment.succeeded"}
        assert deliver_concurrently(url, body, 20) == ["{200: 1}"] * 20
        assert scalar(database_url, "SELECT count(*) FROM payment_events") == 1
        wait_for(
            lambda: scalar(database_url, "SELECT status FROM payment_events") == "applied",
            30,
            what=f"the event to be applied\n{worker.output()}",
        )
        amount = Decimal(body["data"]["amount"])
        assert scalar(database_url, "SELECT count(*) FROM payment_transactions") == 1
        assert (
            scalar(database_url, "SELECT amount_paid FROM shipments WHERE shipment_id = %s", (sid,)) == amount
        )
        drains = (
            "SELECT count(*) FROM jobs WHERE actor = 'drain_payment_events' AND enqueued_by LIKE 'webhook:%%'"
        )
        assert scalar(database_url, drains) == 1  # the one intake transaction that stored it

        # The simulator, as the demo runs it: demo shipments, duplicates, out-of-order deliveries.
        code, output = simulate_payments(
            env,
            *("--url", url, "--create-shipments", "20", "--events", "300", "--duplicates", "0.1"),
            *("--out-of-order", "0.2", "--seed", "11", "--wait", "60"),
        )
        assert code == 0, output
        assert "all 20 shipments match the expected ledger" in output


# How each processing path is held mid-transaction: one job per event waits for the shipment's row
# lock; a batch skips locked shipments, but waits to write payment rows while the table is held.
HOLD = {
    "per-event": ("SELECT 1 FROM shipments WHERE shipment_id = %s FOR UPDATE", "%%FROM shipments%%"),
    "batch": ("LOCK TABLE payment_transactions IN SHARE MODE", "%%INSERT INTO payment_transactions%%"),
}


@pytest.mark.parametrize("processing", ["batch", "per-event"])
def test_worker_killed_mid_processing_recovers_without_double_payment(
    database_url: str, env: dict[str, str], processing: str
) -> None:
    env = {**env, "PAYMENT_PROCESSING": processing}
    hold, waiting = HOLD[processing]
    actor = "drain_payment_events" if processing == "batch" else "process_payment_event"
    with psycopg.connect(database_url, autocommit=True) as conn:
        shipments = create_demo_shipments(conn, 10, seed=2)
    plan = plan_events(shipments, events=200, duplicates=0.05, out_of_order=0.2, seed=2)
    blocked = shipments[0][0]
    web, url = start_web(env)
    with web:
        worker = WorkerProcess(threads=4, env=env).start()
        try:
            with psycopg.connect(database_url) as locker:
                # Processing stalls inside its transaction.
                locker.execute(hold, (blocked,) if "%s" in hold else None)
                stats = post_events(url, "acme", SECRET, plan.bodies, concurrency=8)
                assert set(stats.statuses) == {200}, stats.errors
                wait_for(
                    lambda: scalar(
                        database_url,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        f"AND wait_event_type = 'Lock' AND query LIKE '{waiting}'",
                    ),
                    30,
                    what=f"a worker to wait on the lock\n{worker.output()}",
                )
                worker.kill()  # kill -9 while it is in the middle of processing
                locker.rollback()
            assert open_events(database_url) > 0
        finally:
            worker.__exit__()
        # The killed worker's fetched jobs come back through the lifeline; messages it had not yet
        # fetched, if Redis lost them, would be published again after this (default 300 s).
        with WorkerProcess(threads=4, env={**env, "SKYPORT_REPUBLISH_AFTER_S": "2"}) as second:
            wait_for(
                lambda: open_events(database_url) == 0,
                60,
                what=f"every event processed: {job_states(database_url)}\n{second.output()}",
            )
            with psycopg.connect(database_url, autocommit=True) as conn:
                assert mismatches(conn, plan.expected_paid) == []
                statuses = dict(conn.execute("SELECT status, count(*) FROM payment_events GROUP BY status"))
                assert set(statuses) <= {"applied", "ignored"}, statuses
            # Every job final and agreeing with its event, no drift, each payment applied once.
            wait_for(
                lambda: set(job_states(database_url)) <= {"succeeded", "dead", "cancelled"},
                30,
                what=f"every job to finish: {job_states(database_url)}\n{second.output()}",
            )
            with psycopg.connect(database_url, autocommit=True) as conn:
                lost = conn.execute(
                    "SELECT count(*) FROM job_attempts a JOIN jobs j ON j.id = a.job_id "
                    "WHERE j.actor = %s AND a.outcome = 'lost'",
                    (actor,),
                ).fetchone()[0]
                assert lost >= 1  # the killed worker's jobs were recovered by the lifeline
        check_consistency(database_url, expected_paid=plan.expected_paid)


def test_unknown_shipment_ends_unmatched_and_dead_then_ops_replay_applies_it(
    database_url: str, env: dict[str, str]
) -> None:
    from jobs import payments

    with psycopg.connect(database_url, autocommit=True) as conn:
        sid = create_demo_shipments(conn, 1, seed=3)[0][0]
        conn.execute("DELETE FROM shipments WHERE shipment_id = %s", (sid,))  # not committed yet, say
    body = plan_events(
        [(sid, Decimal("100.00"), Decimal("0"))], events=2, duplicates=0, refunds=0, failures=0, seed=4
    ).bodies
    web, url = start_web(env)
    with web, WorkerProcess(threads=2, env={**env, "PAYMENT_UNMATCHED_RETRY_S": "2"}) as worker:
        assert set(post_events(url, "acme", SECRET, body).statuses) == {200}
        unmatched = "SELECT count(*) FROM payment_events WHERE status = 'unmatched'"
        wait_for(
            lambda: scalar(database_url, unmatched) == 2,
            40,
            what=f"both events to end unmatched: {job_states(database_url)}\n{worker.output()}",
        )
        with psycopg.connect(database_url, autocommit=True) as conn:
            problems = payments.problem_events(conn)
            assert {(p["status"], "not found" in p["error"]) for p in problems} == {("unmatched", True)}
            assert len(problems) == 2
            # Ops restores the shipment, then replays both events (in either order).
            other = create_demo_shipments(conn, 1, seed=5)[0][0]
            conn.execute(
                "UPDATE shipments SET shipment_id = %s, total_cost = 100.00, amount_due = 100.00 "
                "WHERE shipment_id = %s",
                (sid, other),
            )
            for b in reversed(body):
                assert payments.replay_event(conn, "acme", b["id"], by="ops-e2e")
        wait_for(
            # processing + succeeded: if the succeeded one applies first, the processing one is ignored
            lambda: (
                scalar(
                    database_url, "SELECT count(*) FROM payment_events WHERE status IN ('applied', 'ignored')"
                )
                == 2
            ),
            40,
            what=f"the replayed events to apply\n{worker.output()}",
        )
        amount = Decimal(body[0]["data"]["amount"])
        assert (
            scalar(database_url, "SELECT amount_paid FROM shipments WHERE shipment_id = %s", (sid,)) == amount
        )
        assert scalar(database_url, "SELECT count(*) FROM payment_transactions") == 1


def test_the_simulator_speaks_stripe_and_paystack_and_checks_every_balance(
    database_url: str, env: dict[str, str]
) -> None:
    """`python -m demo simulate-payments` in each gateway's format (the provider's
    PAYMENT_PROVIDER_<NAME>), with partial refunds, disputes, duplicates and late deliveries:
    --wait checks every shipment's amount_paid against the plan."""
    gateways = {"PAYMENT_PROVIDER_STRIPE": "stripe", "PAYMENT_PROVIDER_PAYSTACK": "paystack"}
    env = {**env, **gateways}
    web, url = start_web(env)
    with web, WorkerProcess(threads=4, env=env):
        for provider in ("stripe", "paystack"):
            code, output = simulate_payments(
                env,
                *("--url", url, "--provider", provider, "--create-shipments", "10", "--events", "150"),
                *("--refunds", "0.2", "--disputes", "0.2", "--duplicates", "0.1", "--out-of-order", "0.2"),
                *("--seed", "21", "--wait", "60"),
            )
            assert code == 0, output
            assert f"as {provider}" in output and "all 10 shipments match the expected ledger" in output
    events = scalar(database_url, "SELECT count(DISTINCT event_type) FROM payment_events")
    assert (
        events >= 6
    )  # payment_intent.*, charge.refunded, charge.dispute.*, charge.success, refund.processed...
