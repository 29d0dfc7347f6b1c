"""The families' runs in sentences, as `skyport notifications dispatch`, `skyport quotes expire`
and the actors' log lines print them (no dataclass reprs)."""

from __future__ import annotations

from jobs.notifications.dispatch import DispatchStats
from jobs.quotes.expiry import ExpiryStats


def test_a_dispatch_run_in_a_sentence() -> None:
    stats = DispatchStats(claimed=8, sent=5, failed=2, dead=1, batches=1)
    assert stats.summary() == "claimed 8, sent 5, failed 2 (will retry), dead 1, released 0, in 1 batch(es)"
    stats.reaped = {"pending": 3, "dead": 1}
    assert stats.summary().endswith("; expired leases: 1 now dead, 3 now pending")


def test_an_expiry_run_in_a_sentence() -> None:
    stats = ExpiryStats(expired=2, notified=2, batches=1)
    assert stats.summary() == "expired 2 quote(s), 2 notification(s), in 1 batch(es)"
