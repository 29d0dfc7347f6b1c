"""Waiting on conditions with a deadline, saying at the deadline what the world looked like then."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support import wait_for


def wait_until(
    predicate: Callable[[], Any], timeout_s: float, what: str, report: Callable[[], str] = lambda: ""
) -> Any:
    """`tests.support.wait_for`, whose failure also carries `report()` taken at the deadline (the
    workers' logs, the sessions: taken when the wait began they would show nothing of interest)."""
    try:
        return wait_for(predicate, timeout_s, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{report()}") from None
