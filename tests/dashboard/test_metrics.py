"""/metrics: Prometheus text with ledger gauges, outside the login."""

from __future__ import annotations

import psycopg
from starlette.testclient import TestClient

from workers import enqueue, ledger


def _value(text: str, name: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{")]
    assert lines, f"{name} missing from /metrics"
    return float(lines[0].rsplit(" ", 1)[1])


def test_metrics_expose_ledger_and_family_gauges(anonymous: TestClient, dashboard_env: str) -> None:
    for i in range(3):
        enqueue("remember", [f"m{i}"])
    dead = enqueue("refuse", ["x"]).id
    with psycopg.connect(dashboard_env, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET eta = now() - interval '90 seconds' WHERE state = 'queued'")
        started = ledger.job_start(conn, dead, "w1", "m1")
        ledger.job_fail(conn, started, "w1", error="PermanentError: no", traceback=None, retry_in_s=None)

    response = anonymous.get("/metrics")  # no login needed
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, 'skyport_jobs{state="queued"}') == 3
    assert _value(text, 'skyport_jobs{state="dead"}') == 1
    assert _value(text, "skyport_dead_jobs_last_hour") == 1
    assert 89 <= _value(text, "skyport_oldest_queued_job_age_seconds") < 200
    assert _value(text, 'skyport_partitions_intervals_ahead{table="audit_log"}') >= 2
    assert (
        _value(text, 'skyport_matview_staleness_seconds{view="shipment_statistics"}') == -1
    )  # never refreshed
    assert _value(text, "skyport_payment_drift_shipments") == 0
