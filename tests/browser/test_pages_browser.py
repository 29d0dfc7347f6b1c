"""Every console page in real headless Chromium at 1280 and 1920 px, with data in it: nothing wider
than the window, the charts' axes labelled, long keys cut with a copy button. Screenshots of each
page at each width are kept in test-artifacts/."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from dashboard import auth
from dashboard.web import DEFAULT_LIVE_EVERY_MS
from tests.browser.test_dashboard_browser import _up
from tests.dashboard.conftest import make_dead
from tests.support import SkyportProcess, free_port, wait_for
from workers import enqueue, stats

pytestmark = pytest.mark.slow

PASSWORD = "pages-pass-1"
WIDTHS = (1280, 1920)
LONG_KEY = "invoice-reminder:customer-000042:2026-12-06T23:59:59+00:00:second-notice"


def _fill(conn: psycopg.Connection) -> int:
    """Jobs in several states, attempts over the last hour, dead jobs with errors, a long dedup key;
    the rollup run once. Returns a dead job's id."""
    import tests.actors  # noqa: F401 - `remember`

    conn.execute(
        """INSERT INTO jobs (actor, queue, state, max_attempts, attempts, enqueued_at, eta, started_at,
                             finished_at, dedup_key)
           SELECT (ARRAY['send_email','charge_card','expire_quotes'])[1 + g % 3],
                  (ARRAY['default','payments','notifications'])[1 + g % 3], 'succeeded', 3, 1,
                  now() - make_interval(secs => g * 6), now() - make_interval(secs => g * 6),
                  now() - make_interval(secs => g * 6 - 0.2), now() - make_interval(secs => g * 6 - 0.5),
                  'order:' || g
             FROM generate_series(1, 600) AS g"""
    )
    conn.execute(
        """INSERT INTO job_attempts (job_id, attempt, started_at, finished_at, outcome)
           SELECT id, 1, started_at, finished_at, 'succeeded' FROM jobs"""
    )
    dead = make_dead(conn, "parcel-17", error="ConnectionError: carrier timeout", attempts=3)
    make_dead(conn, "parcel-18", error="ConnectionError: carrier timeout", attempts=3)
    make_dead(conn, "parcel-19", error="ValueError: no such address", attempts=1)
    enqueue("remember", ["waiting"], dedup_key=LONG_KEY)
    _family_rows(conn)
    stats.roll_up(conn)
    return dead


def _family_rows(conn: psycopg.Connection) -> None:
    """A dead notification and an unmatched payment event with a long reason, for the domain page."""
    from demo.families import demo_customer
    from jobs import notifications

    user_id, _, _ = demo_customer(conn)
    notifications.enqueue_notification(
        conn, user_id, "demo", "Your parcel is late", "m", "pages:1", wake=False
    )
    conn.execute("UPDATE notification_queue SET status = 'dead', last_error = 'sms: ' || repeat('x', 200)")
    conn.execute(
        """INSERT INTO payment_events (provider, event_id, event_type, payload, shipment_id, idempotency_key,
                                       created_at, status, error, processed_at)
           VALUES ('gateway-one', 'evt_' || repeat('9', 40), 'payment.succeeded',
                   '{"data": {"amount": "1250.00", "currency": "EUR"}}', gen_random_uuid(), 'idem-pages-1',
                   now(), 'unmatched', 'no shipment ' || repeat('y', 300), now())"""
    )


def test_every_page_fits_and_the_charts_have_axes(
    browser, artifacts: Path, conn: psycopg.Connection, redis_namespace: str
) -> None:
    dead = _fill(conn)
    pages = {
        "overview": "/",
        "overview-7d": "/?range=7d",
        "jobs": "/jobs",
        "job": f"/jobs/{dead}",
        "failures": "/failures",
        "periodic": "/periodic",
        "queues": "/queues",
        "audit": "/audit",
        "sessions": "/sessions",
    }
    port = free_port()
    env = {
        "SKYPORT_DASHBOARD_USERS": f"ann:{auth.hash_password(PASSWORD)}:admin",
        "SKYPORT_SECRET_KEY": "pages",
    }
    with SkyportProcess(["web", "--port", str(port)], env) as web:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: _up(base), 30, interval_s=0.2, what=f"the web process\n{web.output()}")
        for width in WIDTHS:
            context = browser.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            try:
                page.goto(f"{base}/login")
                page.screenshot(path=str(artifacts / f"page-login-{width}.png"), full_page=True)
                assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
                page.fill("input[name=username]", "ann")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_url(f"{base}/")
                for name, path in pages.items():
                    page.goto(base + path)
                    assert page.locator("h1").count() >= 1, (name, page.content()[:500])
                    page.screenshot(path=str(artifacts / f"page-{name}-{width}.png"), full_page=True)
                    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
                    assert overflow <= 0, f"{name} at {width} px is {overflow} px wider than the window"
                    if name.startswith("overview"):
                        _check_charts(page)
                page.goto(f"{base}/jobs")
                key = page.locator(f'.key[title="{LONG_KEY}"]')
                assert key.count() == 1 and key.text_content() != LONG_KEY  # cut, whole on hover
                assert page.locator(f'button.copy[data-copy="{LONG_KEY}"]').count() == 1
                if width == WIDTHS[0]:  # a ticked box outlives the live refreshes
                    first = page.locator('input[name="ids"]').first
                    first.check()
                    page.wait_for_timeout(2 * DEFAULT_LIVE_EVERY_MS + 500)
                    assert first.is_checked()
                    assert page.text_content("#live-status").startswith("updated")
            finally:
                context.close()


def _check_charts(page) -> None:
    charts = page.locator("svg.chart")
    assert charts.count() == 4
    for i in range(4):
        chart = charts.nth(i)
        x_labels = chart.locator(".x-axis text").all_text_contents()
        y_labels = chart.locator(".y-axis text").all_text_contents()
        assert "time (UTC)" in x_labels and len(x_labels) >= 4, x_labels
        assert len(y_labels) >= 3, y_labels
    assert page.locator("svg.chart rect.ok").count() > 0  # the attempts of the last hour are drawn
