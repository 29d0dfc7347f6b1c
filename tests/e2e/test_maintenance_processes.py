"""The maintenance actors in real processes: a worker runs them, the scheduler ensures partitions
at start-up."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from jobs.matviews.actors import request_refresh
from jobs.partitions.actors import ensure_partitions
from tests.support import REPO, SkyportProcess, WorkerProcess, scalar, wait_for
from workers import enqueue

pytestmark = pytest.mark.slow


def _state(url: str, job_id: int) -> str:
    return scalar(url, "SELECT state FROM jobs WHERE id = %s", (job_id,))


def test_worker_runs_ensure_partitions_and_a_requested_refresh(
    database_url: str, redis_namespace: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE audit_log_" + datetime.now(UTC).strftime("%Y_%m"))  # lost somehow
    ensure = enqueue(ensure_partitions)
    requested = request_refresh("active_countries", now=datetime.now(UTC) - timedelta(seconds=30))
    with WorkerProcess() as worker:
        worker.wait_ready(database_url, timeout_s=90)
        for ref in (ensure, requested):
            wait_for(
                lambda ref=ref: _state(database_url, ref.id) == "succeeded",
                30,
                what=f"job {ref.id} to succeed: {_state(database_url, ref.id)}\n{worker.output()}",
            )
    name = "audit_log_" + datetime.now(UTC).strftime("%Y_%m")
    assert scalar(database_url, "SELECT to_regclass(%s) IS NOT NULL", (name,))
    assert (
        scalar(database_url, "SELECT outcome FROM matview_refreshes WHERE job_id = %s", (requested.id,))
        == "succeeded"
    )


def test_scheduler_start_up_ensures_partitions_of_a_table_added_by_configuration(
    database_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE readings (at timestamptz NOT NULL) PARTITION BY RANGE (at)")
    config = tmp_path / "maintenance.toml"
    config.write_text('[partitions.readings]\nkey = "at"\ninterval = "day"\npremake = 2\n')
    today = scalar(database_url, "SELECT (now() AT TIME ZONE 'UTC')::date")
    with SkyportProcess(["scheduler"], {"SKYPORT_MAINTENANCE_FILE": str(config)}) as scheduler:
        wait_for(
            lambda: (
                scalar(
                    database_url, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'readings'::regclass"
                )
                == 3
            ),
            30,
            what=f"the scheduler to create readings' partitions\n{scheduler.output()}",
        )
        assert scalar(database_url, "SELECT to_regclass(%s) IS NOT NULL", (f"readings_{today:%Y_%m_%d}",))
        assert scheduler.stop() == 0


def test_scheduler_refuses_to_start_on_a_bad_maintenance_file(database_url: str, tmp_path: Path) -> None:
    config = tmp_path / "maintenance.toml"
    config.write_text('[partitions.audit_log]\ninterval = "fortnight"\n')
    out = subprocess.run(
        [sys.executable, "-m", "skyport", "scheduler"],
        cwd=REPO,
        env={**os.environ, "SKYPORT_MAINTENANCE_FILE": str(config), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "partitions entry 'audit_log'" in out.stderr and "fortnight" in out.stderr
