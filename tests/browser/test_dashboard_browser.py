"""The dashboard in real headless Chromium, with a real web process and a real worker: log in,
find a dead job, retry it, watch it succeed without a reload (the page's live region, paused and
resumed). Screenshots are kept in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard import auth
from dashboard import web as web_module
from tests.support import SkyportProcess, WorkerProcess, free_port, scalar, wait_for
from workers import enqueue

pytestmark = pytest.mark.slow

PASSWORD = "browser-pass-1"


def test_log_in_find_a_dead_job_retry_it_and_watch_it_succeed(
    browser, artifacts: Path, effects: str, redis_namespace: str
) -> None:
    import tests.actors  # noqa: F401 - `flaky`

    job = enqueue("flaky", ["browser-key", 4]).id  # max_retries=3: four failures, dead; a fifth run succeeds
    port = free_port()
    env = {
        "SKYPORT_DASHBOARD_USERS": f"ann:{auth.hash_password(PASSWORD)}:admin",
        "SKYPORT_SECRET_KEY": "browser-test",
    }
    with SkyportProcess(["web", "--port", str(port)], env) as web:
        with WorkerProcess(env=env) as worker:
            try:
                wait_for(lambda: _state(effects, job) == "dead", 120)
            except AssertionError:
                raise AssertionError(f"job {job} did not die\n{worker.output()}") from None
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), 30, interval_s=0.2, what=f"the web process\n{web.output()}")
        page = browser.new_page()
        try:
            page.goto(f"{base}/jobs?state=dead")
            assert "/login" in page.url
            page.fill("input[name=username]", "ann")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/jobs?state=dead")
            page.screenshot(path=str(artifacts / "browser-1-dead-jobs.png"), full_page=True)

            page.click(f'a[href="/jobs/{job}"]')
            page.wait_for_url(f"{base}/jobs/{job}")
            assert page.locator(".state-dead").first.is_visible()
            assert "flaky failure for browser-key" in page.content()
            page.screenshot(path=str(artifacts / "browser-2-job-dead.png"), full_page=True)

            page.once("dialog", lambda dialog: dialog.accept())  # the confirmation
            page.click("button:has-text('Retry')")
            page.wait_for_selector("text=retried 1 job")
            assert page.locator("h1 .state-queued").count() == 1  # no worker runs yet

            # Paused, the page keeps what it shows while the job succeeds.
            page.click("#live-toggle")
            with WorkerProcess(env=env) as worker:
                wait_for(lambda: _state(effects, job) == "succeeded", 60, what=f"success\n{worker.output()}")
                page.wait_for_timeout(2 * web_module.DEFAULT_LIVE_EVERY_MS)
                assert page.locator("h1 .state-queued").count() == 1
                assert page.text_content("#live-status") == "paused"
                # Resumed, the outcome appears without a reload.
                page.click("#live-toggle")
                page.wait_for_selector("h1 .state-succeeded", timeout=10_000)
            page.screenshot(path=str(artifacts / "browser-3-job-succeeded.png"), full_page=True)
            assert "retry by ops:ann" in page.content()  # the audit log names console users ops:<name>
        finally:
            page.close()
    assert scalar(effects, "SELECT attempts FROM jobs WHERE id = %s", (job,)) == 5
    assert scalar(effects, "SELECT count(*) FROM job_attempts WHERE job_id = %s", (job,)) == 5
    assert scalar(effects, "SELECT count(*) FROM audit_log WHERE reason = 'retry'") == 1


def _state(url: str, job: int) -> str:
    return scalar(url, "SELECT state FROM jobs WHERE id = %s", (job,))


def _up(base: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
