"""The seed-schema migration (0001_seed_schema) on real PostgreSQL: it goes down to base and up again
(with data and a later partition in place), and the monthly partitions it creates cover this month
through three months ahead."""

from __future__ import annotations

import pprint
from datetime import datetime, timedelta

import psycopg
import pytest
from psycopg import errors, sql

from db import migrate
from db.schema.business import PARTITIONED_TABLES
from tests.conftest import db_url
from tests.integration.schema_support import SEED_FUNCTIONS, autogenerate_diff, first_of_month, make_shipment

BUSINESS_TABLES = {
    "users",
    "countries",
    "freight_services",
    "quotes",
    "tracking_numbers",
    "shipments",
    "shipment_tracking_events",
    "tracking_event_external_ids",
    "capacity_bookings",
    "shipment_reservations",
    "payment_transactions",
    "notification_queue",
    "audit_log",
}


def public_relations(url: str) -> dict[str, str]:
    with psycopg.connect(url) as c:
        return dict(
            c.execute(
                "SELECT c.relname, c.relkind::text FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
            ).fetchall()
        )


def public_functions(url: str) -> set[str]:
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'public'"
        ).fetchall()
    return {name for (name,) in rows}


# --- down and up again ---------------------------------------------------------------------------


def test_downgrade_to_base_then_upgrade_to_head(fresh_db_name: str) -> None:
    url = db_url(fresh_db_name)
    migrate.upgrade("heads", url)
    with psycopg.connect(url, autocommit=True) as c:
        # Data, and a partition created later (by the partition job), must not stop the downgrade.
        make_shipment(c)
        c.execute(
            "CREATE TABLE audit_log_2099_01 PARTITION OF audit_log"
            " FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
        )

    migrate.downgrade("base", url)

    assert set(public_relations(url)) == {"alembic_version", "alembic_version_pkc"}
    assert public_functions(url) == set()
    assert migrate.current_revision(url) is None

    migrate.upgrade("heads", url)

    relations = public_relations(url)
    assert set(relations) >= BUSINESS_TABLES
    assert relations["shipment_tracking_events"] == relations["audit_log"] == "p"
    assert relations["active_countries"] == relations["shipment_statistics"] == "m"
    assert relations["tracking_number_seq"] == "S"
    assert public_functions(url) >= SEED_FUNCTIONS
    assert migrate.current_revision(url) == migrate.head_revision()
    diff = autogenerate_diff(url)
    assert diff == [], pprint.pformat(diff)


# --- partitions ----------------------------------------------------------------------------------


@pytest.mark.parametrize("parent", PARTITIONED_TABLES)
def test_partitions_cover_this_month_through_three_months_ahead(
    conn: psycopg.Connection, parent: str
) -> None:
    rows = conn.execute(
        """
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = %s::regclass
        ORDER BY c.relname
        """,
        (parent,),
    ).fetchall()
    expected = [
        (
            f"{parent}_{first_of_month(k):%Y_%m}",
            f"FOR VALUES FROM ('{first_of_month(k)} 00:00:00') TO ('{first_of_month(k + 1)} 00:00:00')",
        )
        for k in range(4)
    ]
    assert rows == expected

    # Rows route from the first instant of this month to the last of the third month ahead; not
    # beyond (no default partition hides a missing month).
    column = {"shipment_tracking_events": "event_timestamp", "audit_log": "created_at"}[parent]
    first = datetime.combine(first_of_month(0), datetime.min.time())
    last = datetime.combine(first_of_month(4), datetime.min.time()) - timedelta(microseconds=1)
    for ts in (first, last):
        assert _route(conn, parent, column, ts) == f"{parent}_{ts:%Y_%m}"
    with pytest.raises(errors.CheckViolation, match="no partition"):
        _route(conn, parent, column, last + timedelta(microseconds=1))


def _route(conn: psycopg.Connection, parent: str, column: str, ts: datetime) -> str:
    """Insert a row at `ts` into `parent` (rolled back); the partition it landed in."""
    with conn.transaction(force_rollback=True):
        if parent == "audit_log":
            row = conn.execute(
                "INSERT INTO audit_log (table_name, record_id, action, created_at)"
                " VALUES ('t', '1', 'INSERT', %s) RETURNING tableoid::regclass::text",
                (ts,),
            ).fetchone()
        else:
            row = conn.execute(
                sql.SQL(
                    "INSERT INTO shipment_tracking_events (shipment_id, event_status, {})"
                    " VALUES (%s, 'in_transit', %s) RETURNING tableoid::regclass::text"
                ).format(sql.Identifier(column)),
                (make_shipment(conn), ts),
            ).fetchone()
    return row[0]


def test_a_payment_refunded_before_the_gateways_migration_gets_its_refund_row(fresh_db_name: str) -> None:
    """0015_payment_gateways: refunds are rows of their own; an earlier full refund gets one, keyed
    as processing keys it (a replay of that refund then changes nothing), and no drift."""
    from jobs import payments
    from jobs.payments.apply import movement_key

    url = db_url(fresh_db_name)
    migrate.upgrade("0014_job_stats", url)
    with psycopg.connect(url, autocommit=True) as c:
        sid = make_shipment(c)
        c.execute(
            "UPDATE shipments SET total_cost = 100, amount_paid = 0, amount_due = 100 WHERE shipment_id = %s",
            (sid,),
        )
        c.execute(
            "INSERT INTO payment_transactions (shipment_id, idempotency_key, amount, currency,"
            " transaction_type, transaction_status) VALUES (%s, 'pay_old', 40, 'USD', 'payment', 'refunded')",
            (sid,),
        )
    migrate.upgrade("heads", url)
    with psycopg.connect(url, autocommit=True) as c:
        rows = c.execute(
            "SELECT idempotency_key, amount, transaction_status FROM payment_transactions"
            " WHERE transaction_type = 'refund'"
        ).fetchall()
        assert rows == [(movement_key("refund", "pay_old", "full"), 40, "completed")]
        assert payments.drift(c) == []
    migrate.downgrade("0014_job_stats", url)
    with psycopg.connect(url, autocommit=True) as c:
        assert c.execute("SELECT count(*) FROM payment_transactions").fetchone()[0] == 1


def test_upgrade_of_a_database_from_a_newer_release_says_so_in_one_line(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from skyport.main import main

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    assert main(["db", "upgrade"]) == 1
    err = capsys.readouterr().err
    assert "0099_from_the_future" in err and "newer release" in err
    assert "Traceback" not in err
