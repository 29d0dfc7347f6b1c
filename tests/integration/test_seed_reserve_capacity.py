"""The seed's reserve_capacity (as fixed by 0001_seed_schema) on real PostgreSQL: the day created from
the service's limits, and no overbooking under concurrent callers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

from tests.integration.business_rows import make_service
from tests.integration.seed_support import (
    THREADS,
    run_concurrently,
)


def test_reserve_capacity_creates_the_day_from_the_service_limits(conn: psycopg.Connection) -> None:
    service_id = make_service(conn, max_kg=Decimal("100"), max_m3=Decimal("10"))
    day = date.today() + timedelta(days=3)

    def reserve(kg: str, m3: str) -> bool:
        return conn.execute(
            "SELECT reserve_capacity(%s, %s, %s, %s)", (service_id, day, Decimal(kg), Decimal(m3))
        ).fetchone()[0]

    assert reserve("60", "4") is True  # the seed returned FALSE here: no row for the day yet
    assert reserve("41", "1") is False  # weight would exceed 100
    assert reserve("10", "7") is False  # volume would exceed 10
    assert reserve("40", "6") is True  # exactly full
    assert reserve("0.01", "0") is False
    assert conn.execute(
        "SELECT reserved_weight_kg, reserved_volume_m3, max_weight_kg, max_volume_m3, version"
        " FROM capacity_bookings WHERE service_id = %s AND booking_date = %s",
        (service_id, day),
    ).fetchall() == [(Decimal("100"), Decimal("10"), Decimal("100"), Decimal("10"), 3)]

    with pytest.raises(errors.InvalidParameterValue):
        reserve("-1", "0")
    with pytest.raises(errors.NoDataFound, match="does not exist"):
        conn.execute("SELECT reserve_capacity(-1, %s, 1, 1)", (day,))

    # A service without a configured capacity is not limited (as the table's checks say).
    unlimited = make_service(conn, max_kg=None, max_m3=None)
    assert (
        conn.execute("SELECT reserve_capacity(%s, %s, 1000000, 5000)", (unlimited, day)).fetchone()[0] is True
    )


def test_reserve_capacity_never_overbooks_under_concurrent_callers(
    conn: psycopg.Connection, database_url: str
) -> None:
    max_kg, max_m3 = Decimal("500"), Decimal("60")
    service_id = make_service(conn, max_kg=max_kg, max_m3=max_m3)
    day = date.today() + timedelta(days=10)  # no capacity_bookings row yet: created concurrently too
    attempts = 150

    def caller(index: int) -> Callable[[psycopg.Connection], list[tuple[Decimal, Decimal, bool]]]:
        def run(c: psycopg.Connection) -> list[tuple[Decimal, Decimal, bool]]:
            outcomes = []
            for k in range(attempts):
                kg = Decimal(1 + (index * 7 + k * 3) % 13)  # 1..13 kg
                m3 = Decimal((index + k) % 4) / 4  # 0..0.75 m3
                ok = c.execute(
                    "SELECT reserve_capacity(%s, %s, %s, %s)", (service_id, day, kg, m3)
                ).fetchone()[0]
                outcomes.append((kg, m3, ok))
            return outcomes

        return run

    results = run_concurrently(database_url, [caller(i) for i in range(THREADS)])

    for r in results:
        assert isinstance(r, list), r
    outcomes = [o for r in results for o in r]
    succeeded = [(kg, m3) for kg, m3, ok in outcomes if ok]
    assert 0 < len(succeeded) < len(outcomes), "the capacity must be exhausted for the test to mean anything"
    rows = conn.execute(
        "SELECT reserved_weight_kg, reserved_volume_m3, version FROM capacity_bookings"
        " WHERE service_id = %s AND booking_date = %s",
        (service_id, day),
    ).fetchall()
    assert len(rows) == 1
    reserved_kg, reserved_m3, version = rows[0]
    assert reserved_kg <= max_kg
    assert reserved_m3 <= max_m3
    assert reserved_kg == sum(kg for kg, _ in succeeded)
    assert reserved_m3 == sum(m3 for _, m3 in succeeded)
    # Each successful reservation updated the row once (and bumped its version by exactly one).
    assert version == 1 + len(succeeded)
