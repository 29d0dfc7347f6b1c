"""Notification channel rates across dispatcher processes, against a local SMS provider that
counts requests per second: never more than SKYPORT_SMS_RATE in any second, and a 429 with
Retry-After (2 s) holds every dispatcher, not only the one that got it."""

from __future__ import annotations

import psycopg
import pytest

from tests.faults.test_notification_faults import insert_sms_rows, make_user, sent
from tests.notify.servers import HttpProvider
from tests.support import SkyportProcess, wait_for

pytestmark = pytest.mark.slow

DISPATCHERS = 3


def _env(sms: HttpProvider, **extra: str) -> dict[str, str]:
    return {
        "SKYPORT_SMS_URL": sms.url,
        "SKYPORT_SMS_TIMEOUT_S": "2",
        "SKYPORT_NOTIFY_BATCH": "10",
        "SKYPORT_NOTIFY_BACKOFF_BASE_S": "0.5",
        **extra,
    }


@pytest.mark.timeout(90)
def test_three_dispatchers_never_send_more_sms_per_second_than_the_rate(
    database_url: str, conn: psycopg.Connection
) -> None:
    insert_sms_rows(conn, make_user(conn), "rate-", 40)
    with HttpProvider() as sms:
        env = _env(sms, SKYPORT_SMS_RATE="10/s")
        dispatchers = [SkyportProcess(["notifications", "dispatch"], env).start() for _ in range(DISPATCHERS)]
        try:
            wait_for(lambda: sent(database_url) == 40, 40, what="every SMS to be sent")
        finally:
            for d in dispatchers:
                d.kill()
        per_second = sms.per_second()
        assert max(per_second.values()) <= 10, sorted(per_second.items())
        assert max(sms.arrivals) - min(sms.arrivals) >= 3.0  # 40 sends at 10/s take 4 s, not less
        assert not sms.duplicates()


@pytest.mark.timeout(90)
def test_a_429_with_retry_after_holds_every_dispatcher(database_url: str, conn: psycopg.Connection) -> None:
    insert_sms_rows(conn, make_user(conn), "slow-", 40)
    with HttpProvider() as sms:
        sms.plan = ["ok"] * 6 + [429]  # the 7th request, from whichever dispatcher
        sms.retry_after = "2"
        env = _env(sms, SKYPORT_SMS_RATE="20/s")
        dispatchers = [SkyportProcess(["notifications", "dispatch"], env).start() for _ in range(DISPATCHERS)]
        try:
            wait_for(lambda: len(sms.arrivals) >= 12, 40, what="sends to go on after the 429")
        finally:
            for d in dispatchers:
                d.kill()
        arrivals = sorted(sms.arrivals)
        throttled_at = arrivals[6]
        # Sends already on their way when the 429 came may still arrive; then none for the hold.
        later = [t - throttled_at for t in arrivals[7:]]
        assert all(not 0.5 < t < 1.9 for t in later), later
        assert any(t >= 1.9 for t in later), later
