"""The seed-schema migration (0001_seed_schema) against real PostgreSQL.

The metadata of db/schema/ matches the migrated database (Alembic autogenerate, and a catalog
comparison with `metadata.create_all` for what autogenerate does not compare: CHECK constraints and
partial-index predicates); the migration goes down to base and up again; the monthly partitions
are there; and each fix of a seed bug that can be shown at the schema level is shown here (the
functions are exercised in test_seed_functions.py).
"""

from __future__ import annotations

import itertools
import pprint
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from psycopg import errors, sql

import config
from db import migrate
from db.schema import metadata
from db.schema.business import NOT_IN_METADATA, PARTITIONED_TABLES, include_object
from tests.conftest import db_url

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
SEED_FUNCTIONS = {
    "increment_version",
    "track_status_change",
    "generate_tracking_number",
    "reserve_capacity",
    "convert_quote_to_shipment",
    "process_payment",
    "register_external_tracking_event",
}

_COUNTRY_CODES = itertools.count(1)


# --- helpers -------------------------------------------------------------------------------------


def autogenerate_diff(url: str) -> list:
    """Alembic's comparison of the database at `url` with db.schema.metadata (env.py's filter)."""
    engine = sa.create_engine(config.to_sqlalchemy_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"include_object": include_object, "compare_type": True, "compare_server_default": True},
            )
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def catalog(url: str) -> dict[str, set[tuple]]:
    """Columns, constraints, indexes and partition keys of the metadata's tables, as PostgreSQL
    prints them (so that two databases built differently can be compared)."""
    tables = sorted(metadata.tables)
    with psycopg.connect(url) as c:
        return {
            "columns": set(
                c.execute(
                    """
                    SELECT c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                           pg_get_expr(d.adbin, d.adrelid)
                    FROM pg_attribute a
                    JOIN pg_class c ON c.oid = a.attrelid
                    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
                    WHERE c.relname = ANY(%s) AND c.relkind IN ('r', 'p')
                      AND a.attnum > 0 AND NOT a.attisdropped
                    """,
                    (tables,),
                ).fetchall()
            ),
            "constraints": set(
                c.execute(
                    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                    " WHERE conrelid::regclass::text = ANY(%s)",
                    (tables,),
                ).fetchall()
            ),
            "indexes": set(
                c.execute(
                    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)",
                    (tables,),
                ).fetchall()
            ),
            "partition_keys": set(
                c.execute(
                    "SELECT relname, pg_get_partkeydef(oid) FROM pg_class WHERE relname = ANY(%s)"
                    " AND relkind = 'p'",
                    (tables,),
                ).fetchall()
            ),
        }


def first_of_month(offset: int) -> date:
    """First day of the month `offset` months after the current month (UTC)."""
    today = datetime.now(UTC).date()
    index = today.year * 12 + today.month - 1 + offset
    return date(index // 12, index % 12 + 1, 1)


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


def make_user(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO users (email, password_hash, user_type) VALUES (%s, 'x', 'private') RETURNING user_id",
        (f"{uuid.uuid4().hex}@example.com",),
    ).fetchone()[0]


def make_country(conn: psycopg.Connection, *, active: bool = True) -> int:
    code = f"{next(_COUNTRY_CODES):03d}"  # unique within a run, 3 characters
    return conn.execute(
        "INSERT INTO countries (country_code, country_name, is_active) VALUES (%s, %s, %s)"
        " RETURNING country_id",
        (code, f"Country {code}", active),
    ).fetchone()[0]


def make_service(conn: psycopg.Connection) -> int:
    return conn.execute(
        "INSERT INTO freight_services"
        " (service_name, service_type, max_daily_capacity_kg, max_daily_capacity_m3)"
        " VALUES ('Air standard', 'air', 1000, 100) RETURNING service_id"
    ).fetchone()[0]


def make_shipment(conn: psycopg.Connection, *, total_cost: Decimal | None = Decimal("100.00")) -> uuid.UUID:
    """A shipment inserted directly (the conversion from a quote is tested elsewhere)."""
    user_id, service = make_user(conn), make_service(conn)
    origin, destination = make_country(conn), make_country(conn)
    return conn.execute(
        """
        INSERT INTO shipments (tracking_number, user_id, service_id, origin_country_id,
                               destination_country_id, total_cost)
        VALUES (%s, %s, %s, %s, %s, %s) RETURNING shipment_id
        """,
        (f"T-{uuid.uuid4().hex}", user_id, service, origin, destination, total_cost),
    ).fetchone()[0]


# --- the metadata matches the migration ----------------------------------------------------------


def test_autogenerate_finds_no_difference(database_url: str) -> None:
    diff = autogenerate_diff(database_url)
    assert diff == [], "Alembic autogenerate found differences:\n" + pprint.pformat(diff)


def test_alembic_check_through_env_py_finds_no_difference(database_url: str) -> None:
    # The same comparison, driven by env.py itself (its include_object, its configuration).
    command.check(migrate.alembic_config(database_url))


def test_comparison_still_reports_what_is_really_missing_from_the_metadata(
    conn: psycopg.Connection, database_url: str
) -> None:
    # A partition the partition job would add is not a difference ...
    conn.execute(
        "CREATE TABLE audit_log_2099_01 PARTITION OF audit_log"
        " FOR VALUES FROM ('2099-01-01') TO ('2099-02-01')"
    )
    # ... but tables that merely look like partitions, a stray index and a changed type are.
    conn.execute("CREATE TABLE audit_log_2099_13 (x int)")
    conn.execute("CREATE TABLE shipments_2099_01 (x int)")
    conn.execute("CREATE INDEX stray_idx ON shipments (cargo_weight)")
    conn.execute("ALTER TABLE users ALTER COLUMN phone TYPE varchar(60)")

    diff = autogenerate_diff(database_url)

    flat = [d for entry in diff for d in (entry if isinstance(entry, list) else [entry])]
    removed_tables = {d[1].name for d in flat if d[0] == "remove_table"}
    assert removed_tables == {"audit_log_2099_13", "shipments_2099_01"}, pprint.pformat(diff)
    assert any(d[0] == "remove_index" and d[1].name == "stray_idx" for d in flat), pprint.pformat(diff)
    assert any(d[0] == "modify_type" and d[2:4] == ("users", "phone") for d in flat), pprint.pformat(diff)


@pytest.mark.parametrize(
    ("name", "excluded"),
    [
        ("shipment_tracking_events_2026_11", True),
        ("audit_log_2027_01", True),
        ("active_countries", True),
        ("shipment_statistics", True),
        ("audit_log_2027_13", False),  # no such month
        ("audit_log_27_01", False),
        ("audit_log_2027_01_old", False),
        ("shipments_2026_11", False),  # not a partitioned parent
        ("shipment_tracking_events", False),
        ("some_new_table", False),
    ],
)
def test_include_object_leaves_out_only_partitions_and_known_relations(name: str, excluded: bool) -> None:
    table = sa.Table(name, sa.MetaData())
    assert include_object(table, name, "table", True, None) is not excluded
    # A table that is in the metadata is always compared.
    assert include_object(table, name, "table", True, table) is True


def test_metadata_builds_the_same_catalog_as_the_migration(database_url: str, fresh_db_name: str) -> None:
    """What autogenerate does not compare (CHECK constraints, partial-index predicates, partition
    keys) is compared here: metadata.create_all in an empty database gives the same catalog."""
    empty_url = db_url(fresh_db_name)
    engine = sa.create_engine(config.to_sqlalchemy_url(empty_url), poolclass=sa.pool.NullPool)
    try:
        metadata.create_all(engine)
    finally:
        engine.dispose()

    migrated, created = catalog(database_url), catalog(empty_url)

    assert ("shipments", "shipment_payment_check") in {c[:2] for c in migrated["constraints"]}
    assert ("users", "idx_users_active") in {i[:2] for i in migrated["indexes"]}
    for kind in migrated:
        only_migrated = pprint.pformat(sorted(migrated[kind] - created[kind]))
        only_metadata = pprint.pformat(sorted(created[kind] - migrated[kind]))
        assert migrated[kind] == created[kind], (
            f"{kind} differ:\n only in the migration: {only_migrated}\n only in the metadata: {only_metadata}"
        )


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


# --- the fixes of the seed's bugs ----------------------------------------------------------------


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
