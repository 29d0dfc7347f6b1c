"""The metadata of db/schema/ matches the database the migrations build, on real PostgreSQL: Alembic
autogenerate (directly and through env.py) finds no difference yet still reports what is really
missing, and a catalog comparison with `metadata.create_all` covers what autogenerate does not
compare (CHECK constraints, partial-index predicates, partition keys).

The rest of the seed-schema migration (0001_seed_schema): going down and up again and the monthly
partitions in test_schema_migration.py, the fixes of the seed's bugs in test_schema_seed_fixes.py
(the seed's functions in test_seed_*.py).
"""

from __future__ import annotations

import pprint

import psycopg
import pytest
import sqlalchemy as sa
from alembic import command

import config
from db import migrate
from db.schema import metadata
from db.schema.business import include_object
from tests.conftest import db_url
from tests.integration.schema_support import autogenerate_diff


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
