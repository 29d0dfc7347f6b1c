"""The demo where everything can succeed: its providers receive every channel, its scripted
failures end dead and are delivered when ops retry them, its settings (actors, webhook secret,
providers) are known in any shell that sources .data/demo.env, and the console links to what the
providers received."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

import config
from demo import env as demo_env
from demo.actors import DEMO_FLAKY_ATTEMPTS
from demo.families import DEMO_DEAD_NOTIFICATIONS, DEMO_NOTIFICATIONS, seed_notifications
from demo.providers import Outbox, Providers
from jobs import registry
from jobs.notifications.dispatch import dispatch_configured
from jobs.notifications.queue import retry_dead
from tests.support import REPO, WorkerProcess, free_port, wait_for


@pytest.fixture
def providers(database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Providers:
    """The demo's providers on free ports, never failing at random; the settings `demo.env` makes."""
    smtp_port, http_port = free_port(), free_port()
    lines = demo_env.provider_lines(config.load(), smtp_port, http_port)
    for line in lines:
        name, _, value = line.removeprefix("export ").partition("=")
        monkeypatch.setenv(name, value.strip("'"))
    monkeypatch.setenv("SKYPORT_NOTIFY_BACKOFF_BASE_S", "0")
    config.get.cache_clear()
    with Providers(smtp_port, http_port, failure_rate=0.0) as running:
        yield running
    config.get.cache_clear()


def _statuses(conn: psycopg.Connection) -> dict[str, int]:
    return dict(conn.execute("SELECT status, count(*) FROM notification_queue GROUP BY 1").fetchall())


def test_every_channel_delivers_and_a_retried_dead_notification_succeeds(
    conn: psycopg.Connection, providers: Providers
) -> None:
    with conn.transaction():
        seed_notifications(conn, "t1")
    for _ in range(10):
        dispatch_configured(conn)
    assert _statuses(conn) == {
        "sent": DEMO_NOTIFICATIONS - DEMO_DEAD_NOTIFICATIONS,
        "dead": DEMO_DEAD_NOTIFICATIONS,
    }
    channels = {m["channel"] for m in providers.outbox.newest_first()}
    assert channels == {"email", "sms", "push"}
    dead = [r[0] for r in conn.execute("SELECT queue_id FROM notification_queue WHERE status = 'dead'")]
    assert retry_dead(conn, dead, performed_by="ops:demo") == sorted(dead)
    dispatch_configured(conn)
    assert _statuses(conn) == {"sent": DEMO_NOTIFICATIONS}
    page = urllib.request.urlopen(f"http://127.0.0.1:{providers.http_port}/").read().decode()
    assert "Demo update 0" in page and "demo-customer@skyport.example" in page


def test_the_failure_rate_is_a_setting() -> None:
    assert Outbox(failure_rate=1.0).decide("sms:k", 0) == "random failure"
    assert Outbox(failure_rate=0.0).decide("sms:k", 0) is None
    scripted = Outbox(failure_rate=1.0)
    assert [scripted.decide("sms:k", 2) for _ in range(3)] == [
        "scripted failure 1 of 2",
        "scripted failure 2 of 2",
        None,
    ]


@pytest.mark.slow
def test_dead_demo_jobs_succeed_when_retried(effects: str, redis_namespace: str) -> None:
    """The seed's dead jobs: demo_reject refuses its first attempt, demo_flaky fails all its
    attempts; a retry (one attempt more) succeeds, on a real worker."""
    import demo.actors  # noqa: F401 - the demo's actors, as the demo's processes declare them
    from workers import enqueue, ledger

    flaky = registry.broker.get_actor("demo_flaky")
    assert flaky.options["max_retries"] + 1 == DEMO_FLAKY_ATTEMPTS
    with WorkerProcess(env={"SKYPORT_EXTRA_MODULES": "tests.actors,demo.actors"}) as worker:
        worker.wait_ready(effects)
        rejected = enqueue("demo_reject", kwargs={"order": 1}).id
        wait_for(lambda: _state(effects, rejected) == "dead", 30, what=f"the rejection\n{worker.output()}")
        # A demo_flaky job whose scripted failures used up its attempts (as the seed's end).
        used_up = enqueue("demo_flaky", kwargs={"order": 2, "failures": DEMO_FLAKY_ATTEMPTS}, delay=3600).id
        with psycopg.connect(effects, autocommit=True) as conn:
            conn.execute(
                """UPDATE jobs SET state = 'dead', attempts = %s, max_attempts = %s, finished_at = now(),
                                   dedup_lock = NULL WHERE id = %s""",
                (DEMO_FLAKY_ATTEMPTS, DEMO_FLAKY_ATTEMPTS, used_up),
            )
            for job_id in (rejected, used_up):
                assert ledger.job_retry(conn, job_id, extra_attempts=1)
        for job_id in (rejected, used_up):
            wait_for(
                lambda j=job_id: _state(effects, j) == "succeeded",
                30,
                what=f"job {job_id}\n{worker.output()}",
            )


def _state(url: str, job_id: int) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT state FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]


def test_another_shell_with_the_demo_env_knows_its_actors_and_secret(
    database_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "demo.env"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SKYPORT_", "PAYMENT_"))}
    # The test's own Redis namespace (the demo's file names it for the other shell).
    clean |= {
        "DATABASE_URL": database_url,
        "PYTHONPATH": str(REPO),
        "SKYPORT_BROKER_NAMESPACE": redis_namespace,
    }
    made = subprocess.run(
        [
            str(REPO / ".venv/bin/python"),
            "-m",
            "demo.env",
            "--file",
            str(env_file),
            "--pythonpath",
            str(REPO),
        ],
        env=clean,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert env_file.read_text().endswith(made.stdout)
    assert "export PAYMENT_PROVIDER_STRIPE=stripe" in made.stdout  # --provider stripe, the same secret
    # A second shell: nothing of the demo but the sourced file (and not run from the repository).
    second = {
        k: v for k, v in clean.items() if k not in ("DATABASE_URL", "PYTHONPATH", "SKYPORT_BROKER_NAMESPACE")
    }
    second["PATH"] = "/usr/local/bin:/usr/bin:/bin"  # no virtualenv: the file puts it first
    script = (
        f". {env_file} && . {env_file} && skyport enqueue demo_work --kwargs '{{\"order\": 1}}' && "
        "python -c 'import config; c = config.load(); "
        'print(c.payments.secret_for("simulator"), c.notifications.sms_url, c.web.console_links)\' && '
        'echo "$PATH"'
    )
    shell = subprocess.run(
        ["bash", "-c", script], env=second, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert shell.returncode == 0, shell.stderr
    job_id, settings, path = shell.stdout.splitlines()
    assert path.split(":").count(str(REPO / ".venv/bin")) == 1, path  # sourced twice, there once
    with psycopg.connect(database_url) as conn:
        assert (
            conn.execute("SELECT actor FROM jobs WHERE id = %s", (int(job_id),)).fetchone()[0] == "demo_work"
        )
    # The web process and the simulator read the same secret: the demo's.
    assert settings.startswith(f"{demo_env.DEMO_WEBHOOK_SECRET} http://127.0.0.1:")
    assert "Demo outbox" in settings


def test_the_console_links_to_what_the_providers_received(
    dashboard_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dashboard.app import create_app
    from tests.dashboard.conftest import log_in

    monkeypatch.setenv("SKYPORT_CONSOLE_LINKS", "Demo outbox=http://127.0.0.1:8026/")
    config.get.cache_clear()
    with TestClient(create_app(), follow_redirects=False) as client:
        page = log_in(client, "ann", "ann-secret-1").get("/jobs").text
    assert '<a href="http://127.0.0.1:8026/" rel="noopener" target="_blank">Demo outbox ↗</a>' in page
    monkeypatch.setenv("SKYPORT_CONSOLE_LINKS", "no-url-here")
    with pytest.raises(config.ConfigError, match="SKYPORT_CONSOLE_LINKS"):
        config.load()
