"""The demo: `python -m demo seed` fills every family that exists; private servers start when nothing
answers (cheap when `pgserver` is installed; skipped otherwise)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from tests.support import REPO


def test_demo_seed_creates_jobs_and_family_data(conn: psycopg.Connection, redis_namespace: str) -> None:
    env = {**os.environ, "SKYPORT_EXTRA_MODULES": "demo.actors", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "demo", "seed"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "demo: ledger: 46 demo jobs" in done.stdout
    actors = dict(
        conn.execute("SELECT actor, count(*) FROM jobs WHERE actor LIKE 'demo_%' GROUP BY 1").fetchall()
    )
    assert actors == {"demo_work": 34, "demo_flaky": 11, "demo_reject": 1}
    assert conn.execute("SELECT count(*) FROM quotes WHERE valid_until > LOCALTIMESTAMP").fetchone()[0] == 6
    if importlib.util.find_spec("jobs.notifications"):
        assert conn.execute("SELECT count(*) FROM notification_queue").fetchone()[0] == 8


@pytest.mark.slow
def test_private_servers_start_when_nothing_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if importlib.util.find_spec("pgserver") is None:
        pytest.skip("pgserver is not installed (the demo installs it when it needs it)")
    import config
    from demo import servers

    monkeypatch.setattr(servers, "DATA", tmp_path)
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/skyport")
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:1/0")
    config.get.cache_clear()
    try:
        pg_url, redis_url = servers.start_postgres(), servers.start_redis()
        assert servers.postgres_answers(pg_url) and servers.redis_answers(redis_url)
        assert str(tmp_path) in pg_url and redis_url == f"unix://{tmp_path}/redis/redis.sock"
    finally:
        servers.stop()
        config.get.cache_clear()
    assert not servers.redis_answers(f"unix://{tmp_path}/redis/redis.sock")
