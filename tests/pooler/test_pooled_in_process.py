"""The product's own connections through a real PgBouncer in transaction mode, in this process:
enqueue one by one and batched, dedup keys under concurrency, view refreshes, partition upkeep,
the payment webhooks, migrations."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from datetime import date
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import errors, sql
from starlette.testclient import TestClient

import config
from db import locks, migrate, pool
from jobs.matviews import refresh
from jobs.partitions import maintain
from jobs.partitions.registry import DEFAULT_TABLES
from jobs.payments.events import signature_header
from tests.conftest import ADMIN_URL, db_url
from tests.integration.payments_support import event
from tests.pgbouncer import PgBouncer
from tests.pooler.conftest import POOL_SIZE, Pooled, PoolerRun
from tests.support import free_port, job_states, scalar
from workers import JobSpec, enqueue, enqueue_many, ledger, ledger_sql

TRACKING, AUDIT = DEFAULT_TABLES
# Calls per client connection: psycopg prepares a statement at its 5th run on a connection.
CALLS = 24
THREADS = 6


def _in_threads(count: int, target, *args) -> list:
    results: list = []
    errors_seen: list[BaseException] = []
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results.append(target(i, *args))
        except BaseException as exc:
            errors_seen.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors_seen == []
    return results


def test_without_the_setting_psycopg_prepares_and_the_pooler_breaks_it(effects: str) -> None:
    """The failure the setting prevents, reproduced on a pooler of its own (its errors stay out of
    the module's logs): clients sharing server connections find each other's statements."""
    with PgBouncer(ADMIN_URL, pool_size=2) as bouncer:
        url = bouncer.url(effects)
        broken: list[str] = []
        clients = [psycopg.connect(url, autocommit=True) for _ in range(4)]
        try:
            for i in range(8):
                for client in clients:
                    try:
                        client.execute("SELECT %s::int + 1", (i,))
                    except (errors.DuplicatePreparedStatement, errors.InvalidSqlStatementName) as exc:
                        broken.append(str(exc))
        finally:
            for client in clients:
                client.close()
        assert any("prepared statement" in e for e in broken), broken
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as fixed:
            assert [fixed.execute("SELECT %s::int + 1", (i,)).fetchone()[0] for i in range(20)] == list(
                range(1, 21)
            )


def test_enqueue_one_by_one_and_batched(pooled: Pooled) -> None:
    assert config.get().database.pooler == "transaction" and pool.connect_kwargs() == {
        "prepare_threshold": None
    }

    def one_by_one(i: int) -> list[int]:
        return [enqueue("remember", [f"one-{i}-{n}"]).id for n in range(CALLS)]

    ids = [job for batch in _in_threads(THREADS, one_by_one) for job in batch]
    assert len(set(ids)) == THREADS * CALLS
    for round_ in range(CALLS // 4):
        refs = enqueue_many([JobSpec("remember", [f"many-{round_}-{n}"]) for n in range(25)])
        assert len({r.id for r in refs}) == 25 and all(r.created for r in refs)
    # In the app's transaction (the app's own connection, opened as the product's are): the jobs
    # exist only if it commits.
    with pool.connect(pooled.url) as app:
        for n in range(CALLS // 2):
            enqueue("remember", [f"rolled-back-{n}"], conn=app)
        app.rollback()
        for n in range(CALLS // 2):
            enqueue("remember", [f"committed-{n}"], conn=app)
        app.commit()
    total = THREADS * CALLS + (CALLS // 4) * 25 + CALLS // 2
    assert job_states(pooled.direct) == {"queued": total}
    assert scalar(pooled.direct, "SELECT count(*) FROM jobs WHERE args->>0 LIKE 'rolled-back-%%'") == 0
    # Enqueued outside a transaction: sent to Redis at once; in the app's: left to the relay.
    unpublished = scalar(pooled.direct, "SELECT count(*) FROM jobs WHERE published_at IS NULL")
    assert unpublished == CALLS // 2


def test_a_dedup_key_from_many_threads_makes_one_job(pooled: Pooled) -> None:
    for round_ in range(CALLS // 4):
        key = f"dedup-{round_}"
        refs = _in_threads(16, lambda i, k: enqueue("remember", [k], dedup_key=k, dedup_window=60), key)
        assert len({r.id for r in refs}) == 1
        assert sum(r.created for r in refs) == 1
    assert scalar(pooled.direct, "SELECT count(*) FROM jobs") == CALLS // 4


def test_view_refreshes_are_single_flight_and_leave_no_lock(pooled: Pooled) -> None:
    for _ in range(CALLS // 4):
        with pool.connection() as conn:
            results = [
                refresh.refresh_view(conn, view) for view in ("active_countries", "shipment_statistics")
            ]
        assert [r.outcome for r in results] == ["succeeded", "succeeded"]
    # Another process refreshing the view holds its lock (in a transaction of its own): skipped.
    with locks.try_lock(refresh.ADVISORY_LOCK_CLASS, "active_countries") as got:
        assert got
        with pool.connection() as conn:
            assert refresh.refresh_view(conn, "active_countries").outcome == "skipped"
    with pool.connection() as conn:
        assert refresh.refresh_view(conn, "active_countries").outcome == "succeeded"
    with psycopg.connect(pooled.direct) as check:
        outcomes = dict(
            check.execute("SELECT outcome, count(*) FROM matview_refreshes GROUP BY 1").fetchall()
        )
    assert outcomes == {"succeeded": 2 * (CALLS // 4) + 1, "skipped": 1}


@pytest.mark.parametrize("pooled", ["pooled", "direct"], indirect=True)
def test_partition_upkeep_creates_detaches_and_drops_one_worker_at_a_time(pooled: Pooled) -> None:
    def ensure(i: int) -> list[maintain.TableResult]:
        with pool.connection() as conn:
            return maintain.ensure_partitions(conn, [TRACKING, AUDIT], today=date(2024, 1, 15))

    # Fewer server connections than racers: a racer waits for one, never for a lock it holds.
    results = [r for batch in _in_threads(POOL_SIZE + 2, ensure) for r in batch]
    assert all(r.outcome in ("ok", "busy") for r in results), results
    created = [name for r in results for name in r.created]
    assert len(created) == len(set(created)) and "audit_log_2024_01" in created
    with pool.connection() as conn:
        [dropped] = maintain.apply_retention(conn, [TRACKING, AUDIT], today=date(2026, 4, 10))
        assert dropped.outcome == "ok", dropped
        assert dropped.dropped == [f"shipment_tracking_events_2024_{m:02d}" for m in (1, 2, 3)]
        # With a DEFAULT partition (no CONCURRENTLY), archiving: detached, kept.
        conn.execute("CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT")
        [archived] = maintain.apply_retention(
            conn, [replace(AUDIT, retention=24, archive=True)], today=date(2026, 4, 10)
        )
    assert archived.detached == ["audit_log_2024_01", "audit_log_2024_02", "audit_log_2024_03"]
    assert scalar(pooled.direct, "SELECT to_regclass('shipment_tracking_events_2024_01')") is None
    assert scalar(pooled.direct, "SELECT to_regclass('audit_log_2024_01')") is not None


def test_payment_webhooks_store_each_event_once_and_the_web_is_ready(
    pooled: Pooled, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET", "whsec_pooled")
    config.get.cache_clear()
    from dashboard.app import create_app

    bodies = [event(uuid.uuid4()) for _ in range(CALLS // 2)]
    with TestClient(create_app()) as client:
        statuses = []
        for body in [*bodies, *bodies[:4]]:
            raw = json.dumps(body).encode()
            response = client.post(
                "/webhooks/payments/stripe",
                content=raw,
                headers={"Skyport-Signature": signature_header("whsec_pooled", raw)},
            )
            assert response.status_code == 200, response.text
            statuses.append(response.json()["status"])
        ready = client.get("/readyz")  # PostgreSQL and its schema, probed through the pooler
        assert (ready.status_code, ready.json()["problems"]) == (200, []), ready.text
    assert statuses == ["accepted"] * len(bodies) + ["duplicate"] * 4
    assert scalar(pooled.direct, "SELECT count(*) FROM payment_events") == len(bodies)
    drains = scalar(pooled.direct, "SELECT count(*) FROM jobs WHERE actor = 'drain_payment_events'")
    assert 1 <= drains <= len(bodies)  # one per intake transaction


def test_the_relays_poll_finds_cancelled_claims_by_id(pooled: Pooled) -> None:
    """What a relay that cannot LISTEN asks on each sweep (workers/relay.py)."""
    job, other = (enqueue("remember", [key]).id for key in ("to-cancel", "kept"))
    with pool.connection() as conn:
        assert ledger.job_cancel(conn, job, by="test")
        for _ in range(CALLS // 4):
            found = conn.execute(ledger_sql.JOB_CANCELLED_AMONG, {"ids": [job, other]}).fetchall()
            assert found == [(job,)]


def _closed_port_url(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{free_port()}"))


def test_migrations_go_to_the_direct_url(fresh_db_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    direct = db_url(fresh_db_name)
    # DATABASE_URL leads nowhere: only the direct URL can have been used.
    monkeypatch.setenv("DATABASE_URL", _closed_port_url(direct))
    monkeypatch.setenv("SKYPORT_DATABASE_POOLER", "transaction")
    monkeypatch.setenv("DATABASE_DIRECT_URL", direct)
    config.get.cache_clear()
    try:
        assert migrate.create_database_if_missing() is False
        migrate.upgrade()
        assert migrate.current_revision() == migrate.head_revision()
    finally:
        config.get.cache_clear()


def test_migrations_run_through_the_pooler_without_a_direct_url(
    pooler_run: PoolerRun, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"skyport_pooled_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("DATABASE_URL", pooler_run.bouncer.url(db_url(name)))
    monkeypatch.setenv("SKYPORT_DATABASE_POOLER", "transaction")
    monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    config.get.cache_clear()
    try:
        assert migrate.create_database_if_missing() is True
        migrate.upgrade()
        assert migrate.current_revision() == migrate.head_revision()
    finally:
        config.get.cache_clear()
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
