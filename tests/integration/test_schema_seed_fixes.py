"""Each fix of a seed bug by 0001_seed_schema that can be shown at the schema level, on real
PostgreSQL: the audit log's primary key, external tracking events deduplicated across partitions,
the version trigger, the shipment payment check, status tracking, tracking numbers, and the
materialized views (the seed's functions are exercised in test_seed_*.py)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors, sql

from db.schema.business import NOT_IN_METADATA
from tests.integration.business_rows import make_country, make_service, make_user
from tests.integration.schema_support import SEED_FUNCTIONS, first_of_month, make_shipment


def test_audit_log_primary_key_includes_the_partition_key_and_inserts_work(conn: psycopg.Connection) -> None:
    (definition,) = conn.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'audit_log'::regclass"
        " AND contype = 'p'"
    ).fetchone()
    assert definition == "PRIMARY KEY (audit_id, created_at)"

    user_id = make_user(conn)
    next_month = datetime.combine(first_of_month(1), datetime.min.time()) + timedelta(hours=5)
    rows = conn.execute(
        """
        INSERT INTO audit_log (table_name, record_id, action, user_id, ip_address, old_values, new_values,
                               changed_fields, created_at)
        VALUES ('users', 'u1', 'UPDATE', %s, '10.0.0.1', '{"a": 1}', '{"a": 2}', ARRAY['a'], DEFAULT),
               ('users', 'u1', 'DELETE', NULL, NULL, NULL, NULL, NULL, %s)
        RETURNING audit_id, tableoid::regclass::text
        """,
        (user_id, next_month),
    ).fetchall()
    assert len({audit_id for audit_id, _ in rows}) == 2
    assert [partition for _, partition in rows] == [
        f"audit_log_{first_of_month(0):%Y_%m}",
        f"audit_log_{first_of_month(1):%Y_%m}",
    ]
    assert conn.execute("SELECT count(*) FROM audit_log WHERE record_id = 'u1'").fetchone()[0] == 2


def test_external_tracking_events_are_deduplicated_across_partitions(conn: psycopg.Connection) -> None:
    shipment, other_shipment = make_shipment(conn), make_shipment(conn)
    this_month = datetime.combine(first_of_month(0), datetime.min.time()) + timedelta(hours=1)
    next_month = datetime.combine(first_of_month(1), datetime.min.time()) + timedelta(hours=1)

    def insert(shipment_id: uuid.UUID, external_id: str | None, ts: datetime) -> int:
        return conn.execute(
            "INSERT INTO shipment_tracking_events"
            " (shipment_id, event_status, event_timestamp, external_event_id)"
            " VALUES (%s, 'in_transit', %s, %s) RETURNING event_id",
            (shipment_id, ts, external_id),
        ).fetchone()[0]

    first_event = insert(shipment, "carrier-42", this_month)
    # The same external event again, at another timestamp, in another partition: refused.
    with pytest.raises(errors.UniqueViolation, match="tracking_event_external_ids_pkey"):
        insert(shipment, "carrier-42", next_month)
    # The same external id on another shipment, and any number of events without one: accepted.
    insert(other_shipment, "carrier-42", next_month)
    insert(shipment, None, this_month)
    unnamed = insert(shipment, None, this_month)
    # Giving an event an external id registers it; the same id is then refused for another event.
    conn.execute(
        "UPDATE shipment_tracking_events SET external_event_id = 'carrier-43' WHERE event_id = %s", (unnamed,)
    )
    with pytest.raises(errors.UniqueViolation, match="tracking_event_external_ids_pkey"):
        insert(shipment, "carrier-43", this_month)

    assert (
        conn.execute(
            "SELECT count(*) FROM shipment_tracking_events WHERE shipment_id = %s", (shipment,)
        ).fetchone()[0]
        == 3
    )
    assert conn.execute(
        "SELECT shipment_id, external_event_id, event_id FROM tracking_event_external_ids ORDER BY event_id"
    ).fetchall()[0] == (shipment, "carrier-42", first_event)

    # Deleting the event frees its external id; deleting the shipment cascades everywhere.
    conn.execute("DELETE FROM shipment_tracking_events WHERE event_id = %s", (first_event,))
    insert(shipment, "carrier-42", next_month)
    conn.execute("DELETE FROM shipments WHERE shipment_id = %s", (shipment,))
    assert (
        conn.execute(
            "SELECT count(*) FROM tracking_event_external_ids WHERE shipment_id = %s", (shipment,)
        ).fetchone()[0]
        == 0
    )

    # The seed's non-unique indexes are kept on the partitioned table; no unique one is there.
    indexes = dict(
        conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'shipment_tracking_events'"
        ).fetchall()
    )
    assert {"idx_tracking_shipment", "idx_tracking_external"} <= set(indexes)
    assert [name for name, d in indexes.items() if "UNIQUE" in d] == ["shipment_tracking_events_pkey"]


def test_version_increments_by_exactly_one_per_update(conn: psycopg.Connection) -> None:
    user_id = make_user(conn)
    shipment_id = make_shipment(conn)
    service_id = make_service(conn)
    origin, destination = make_country(conn), make_country(conn)
    quote_id = conn.execute(
        "INSERT INTO quotes (user_id, origin_country_id, destination_country_id) VALUES (%s, %s, %s)"
        " RETURNING quote_id",
        (user_id, origin, destination),
    ).fetchone()[0]
    booking_id = conn.execute(
        "INSERT INTO capacity_bookings (service_id, booking_date, max_weight_kg, max_volume_m3)"
        " VALUES (%s, CURRENT_DATE, 10, 10) RETURNING booking_id",
        (service_id,),
    ).fetchone()[0]

    for table, key, value in [
        ("users", "user_id", user_id),
        ("quotes", "quote_id", quote_id),
        ("shipments", "shipment_id", shipment_id),
        ("capacity_bookings", "booking_id", booking_id),
    ]:
        where = sql.SQL("WHERE {} = %s").format(sql.Identifier(key))
        select = sql.SQL("SELECT version FROM {} ").format(sql.Identifier(table)) + where
        for assignment in ("version = version + 1", "version = 100", "created_at = created_at"):
            before = conn.execute(select, (value,)).fetchone()[0]
            update = sql.SQL("UPDATE {} SET {} ").format(sql.Identifier(table), sql.SQL(assignment))
            conn.execute(update + where, (value,))
            after = conn.execute(select, (value,)).fetchone()[0]
            assert after == before + 1, f"{table}: {assignment!r} took version {before} to {after}"


def test_no_function_writes_the_version_itself(conn: psycopg.Connection) -> None:
    # The trigger is the single mechanism (the seed's `version = version + 1` lines are gone).
    rows = conn.execute(
        "SELECT proname FROM pg_proc WHERE proname = ANY(%s)"
        # (comments stripped: they quote the removed statement)
        " AND regexp_replace(prosrc, '--[^\\n]*', '', 'g') ~* 'version\\s*=\\s*version'",
        (sorted(SEED_FUNCTIONS),),
    ).fetchall()
    assert rows == []
    triggers = conn.execute(
        "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgfoid = 'increment_version'::regproc"
        " ORDER BY 1"
    ).fetchall()
    assert [t for (t,) in triggers] == ["capacity_bookings", "quotes", "shipments", "users"]


@pytest.mark.parametrize(
    ("total_cost", "amount_paid", "amount_due", "accepted"),
    [
        (Decimal("100"), Decimal("0"), None, True),
        (Decimal("100"), Decimal("100"), Decimal("0"), True),
        (None, Decimal("0"), None, True),
        (Decimal("0"), Decimal("0"), Decimal("0"), True),
        # The seed accepted these (its check was NULL, or true with a negative amount):
        (None, Decimal("50"), None, False),  # paid without a total
        (Decimal("100"), Decimal("-5"), Decimal("105"), False),  # negative payment
        (Decimal("-10"), Decimal("-20"), Decimal("10"), False),  # negative total
        (Decimal("100"), None, Decimal("100"), False),  # unknown amount paid (NOT NULL now)
        # ... and still refused:
        (Decimal("100"), Decimal("100.01"), None, False),  # more than the total
        (Decimal("100"), Decimal("10"), Decimal("-1"), False),  # negative amount due
    ],
)
def test_shipment_payment_check(
    conn: psycopg.Connection,
    total_cost: Decimal | None,
    amount_paid: Decimal | None,
    amount_due: Decimal | None,
    accepted: bool,
) -> None:
    shipment_id = make_shipment(conn, total_cost=None)
    update = "UPDATE shipments SET total_cost = %s, amount_paid = %s, amount_due = %s WHERE shipment_id = %s"
    params = (total_cost, amount_paid, amount_due, shipment_id)
    if accepted:
        conn.execute(update, params)
        assert conn.execute(
            "SELECT total_cost, amount_paid, amount_due FROM shipments WHERE shipment_id = %s", (shipment_id,)
        ).fetchone() == (total_cost, amount_paid, amount_due)
    else:
        with pytest.raises((errors.CheckViolation, errors.NotNullViolation)):
            conn.execute(update, params)


def test_status_change_is_tracked_also_from_and_to_null(conn: psycopg.Connection) -> None:
    shipment_id = make_shipment(conn)

    def status() -> tuple:
        return conn.execute(
            "SELECT shipment_status, previous_status, status_changed_at IS NOT NULL FROM shipments"
            " WHERE shipment_id = %s",
            (shipment_id,),
        ).fetchone()

    assert status() == ("pending", None, False)
    conn.execute("UPDATE shipments SET cargo_weight = 1 WHERE shipment_id = %s", (shipment_id,))
    assert status() == ("pending", None, False)  # not a status change
    conn.execute("UPDATE shipments SET shipment_status = 'confirmed' WHERE shipment_id = %s", (shipment_id,))
    assert status() == ("confirmed", "pending", True)
    conn.execute("UPDATE shipments SET shipment_status = NULL WHERE shipment_id = %s", (shipment_id,))
    assert status() == (None, "confirmed", True)
    conn.execute("UPDATE shipments SET shipment_status = 'picked_up' WHERE shipment_id = %s", (shipment_id,))
    assert status() == ("picked_up", None, True)  # the seed's `!=` missed this change


def test_tracking_numbers_are_never_truncated_and_use_the_utc_year(conn: psycopg.Connection) -> None:
    conn.execute("SET TIME ZONE 'Pacific/Kiritimati'")  # UTC+14: another calendar day than UTC
    utc_year = conn.execute("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY')").fetchone()[0]

    first = conn.execute("SELECT generate_tracking_number()").fetchone()[0]
    assert first == f"ASL-{utc_year}-1000000"

    # Past 9,999,999 the seed's LPAD(x, 7) cut the number to 7 digits (and collided).
    conn.execute("SELECT setval('tracking_number_seq', 9999998)")
    numbers = [conn.execute("SELECT generate_tracking_number()").fetchone()[0] for _ in range(3)]
    assert numbers == [f"ASL-{utc_year}-9999999", f"ASL-{utc_year}-10000000", f"ASL-{utc_year}-10000001"]
    assert (
        conn.execute(
            "SELECT count(*) FROM tracking_numbers"
            " WHERE NOT is_used AND used_at IS NULL AND shipment_id IS NULL"
        ).fetchone()[0]
        == 4
    )


def test_materialized_views_refresh_concurrently(conn: psycopg.Connection) -> None:
    active, inactive = make_country(conn), make_country(conn, active=False)
    make_shipment(conn, total_cost=Decimal("100"))
    make_shipment(conn, total_cost=Decimal("300"))

    conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY active_countries")
    conn.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY shipment_statistics")

    ids = {row[0] for row in conn.execute("SELECT country_id FROM active_countries").fetchall()}
    assert active in ids
    assert inactive not in ids
    assert conn.execute("SELECT shipment_status, count, avg_cost FROM shipment_statistics").fetchall() == [
        ("pending", 2, Decimal("200"))
    ]
    unique_indexes = conn.execute(
        "SELECT tablename FROM pg_indexes WHERE tablename = ANY(%s) AND indexdef LIKE 'CREATE UNIQUE%%'"
        " ORDER BY 1",
        (sorted(NOT_IN_METADATA),),
    ).fetchall()
    assert unique_indexes == [("active_countries",), ("shipment_statistics",)]
