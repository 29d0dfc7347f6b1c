"""Alpha Skyport v2 business tables, as created by db/migrations/versions/0001_seed_schema.py.

SQLAlchemy Core mirror of the migration: same columns, types, nullability, server defaults,
constraints and indexes (named as PostgreSQL names them), so that Alembic's autogenerate finds no
difference (tests/integration/test_schema.py). Functions, triggers, the sequence and the
materialized views live in the migration only; the monthly partitions are created by the migration
and the partition job, and are left out of the comparison by `include_object` below.
"""

from __future__ import annotations

import re

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata

# Parents partitioned by month; their partitions are named `<parent>_<yyyy>_<mm>`.
PARTITIONED_TABLES = ("shipment_tracking_events", "audit_log")
# Relations of the migration that are deliberately not tables of the metadata.
NOT_IN_METADATA = frozenset({"active_countries", "shipment_statistics"})  # materialized views

# Partition names (jobs/partitions): `<parent>_<yyyy>`, `<parent>_<yyyy>_<mm>`, `<parent>_<yyyy>_<mm>_<dd>`.
_PARTITION_NAME = re.compile(
    rf"^(?:{'|'.join(re.escape(t) for t in PARTITIONED_TABLES)})_(?:19|20|21)\d\d"
    r"(?:_(?:0[1-9]|1[0-2])(?:_(?:0[1-9]|[12]\d|3[01]))?)?$"
)


def is_partition_name(name: str) -> bool:
    """True for `<parent>_<yyyy>[_<mm>[_<dd>]]` where parent is one of PARTITIONED_TABLES."""
    return _PARTITION_NAME.match(name) is not None


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Alembic's `include_object` hook (used by env.py and the tests).

    Leaves out of the autogenerate comparison only database tables that have no counterpart in the
    metadata and are legitimately absent from it: the monthly partitions of PARTITIONED_TABLES and
    the relations in NOT_IN_METADATA. Anything else missing from the metadata is still reported.
    """
    if type_ == "table" and reflected and compare_to is None and name is not None:
        return not (is_partition_name(name) or name in NOT_IN_METADATA)
    return True


_NOW = sa.text("CURRENT_TIMESTAMP")
_UUID_DEFAULT = sa.text("gen_random_uuid()")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _timestamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", sa.DateTime(), server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(), server_default=_NOW),
    ]


def _version() -> sa.Column:
    # Maintained by the increment_version trigger (users, quotes, shipments, capacity_bookings).
    return sa.Column("version", sa.Integer, nullable=False, server_default=sa.text("1"))


# --- users ---------------------------------------------------------------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Uuid, primary_key=True, server_default=_UUID_DEFAULT),
    sa.Column("email", sa.String(255), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("user_type", sa.String(20), nullable=False),
    sa.Column("first_name", sa.String(100)),
    sa.Column("last_name", sa.String(100)),
    sa.Column("company_name", sa.String(255)),
    sa.Column("phone", sa.String(50)),
    sa.Column("country_code", sa.String(3)),
    sa.Column("address_line1", sa.String(255)),
    sa.Column("address_line2", sa.String(255)),
    sa.Column("city", sa.String(100)),
    sa.Column("state_province", sa.String(100)),
    sa.Column("postal_code", sa.String(20)),
    sa.Column("is_verified", sa.Boolean, server_default=sa.text("false")),
    sa.Column("is_active", sa.Boolean, server_default=sa.text("true")),
    _version(),
    *_timestamps(),
    sa.Column("last_login", sa.DateTime()),
    sa.UniqueConstraint("email", name="users_email_key"),
    sa.CheckConstraint(_in("user_type", ("private", "business")), name="users_user_type_check"),
)
sa.Index("idx_users_email", users.c.email)
sa.Index("idx_users_type", users.c.user_type)
sa.Index("idx_users_active", users.c.is_active, postgresql_where=sa.text("is_active = true"))

# --- countries, freight_services -----------------------------------------------------------------

countries = sa.Table(
    "countries",
    metadata,
    sa.Column("country_id", sa.Integer, primary_key=True),
    sa.Column("country_code", sa.String(3), nullable=False),
    sa.Column("country_name", sa.String(100), nullable=False),
    sa.Column("region", sa.String(50)),
    sa.Column("is_active", sa.Boolean, server_default=sa.text("true")),
    sa.Column("cache_version", sa.Integer, server_default=sa.text("1")),
    *_timestamps(),
    sa.UniqueConstraint("country_code", name="countries_country_code_key"),
)
sa.Index("idx_countries_code", countries.c.country_code)
sa.Index("idx_countries_active", countries.c.is_active, postgresql_where=sa.text("is_active = true"))

freight_services = sa.Table(
    "freight_services",
    metadata,
    sa.Column("service_id", sa.Integer, primary_key=True),
    sa.Column("service_name", sa.String(100), nullable=False),
    sa.Column("service_type", sa.String(20), nullable=False),
    sa.Column("description", sa.Text),
    sa.Column("base_rate", sa.Numeric(10, 2)),
    sa.Column("currency", sa.String(3), server_default=sa.text("'USD'::character varying")),
    sa.Column("estimated_days_min", sa.Integer),
    sa.Column("estimated_days_max", sa.Integer),
    # NULL = capacity not limited.
    sa.Column("max_daily_capacity_kg", sa.Numeric(12, 2)),
    sa.Column("max_daily_capacity_m3", sa.Numeric(12, 2)),
    sa.Column("is_active", sa.Boolean, server_default=sa.text("true")),
    sa.Column("cache_version", sa.Integer, server_default=sa.text("1")),
    *_timestamps(),
    sa.CheckConstraint(
        _in("service_type", ("sea", "air", "land")), name="freight_services_service_type_check"
    ),
)
sa.Index("idx_freight_service_type", freight_services.c.service_type)
sa.Index("idx_freight_active", freight_services.c.is_active, postgresql_where=sa.text("is_active = true"))

# --- quotes --------------------------------------------------------------------------------------

QUOTE_STATUSES = ("pending", "calculating", "quoted", "accepted", "rejected", "expired", "converted")

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("quote_id", sa.Uuid, primary_key=True, server_default=_UUID_DEFAULT),
    sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey("users.user_id", name="quotes_user_id_fkey", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("idempotency_key", sa.String(100)),
    sa.Column(
        "origin_country_id",
        sa.Integer,
        sa.ForeignKey("countries.country_id", name="quotes_origin_country_id_fkey"),
        nullable=False,
    ),
    sa.Column(
        "destination_country_id",
        sa.Integer,
        sa.ForeignKey("countries.country_id", name="quotes_destination_country_id_fkey"),
        nullable=False,
    ),
    sa.Column(
        "service_id", sa.Integer, sa.ForeignKey("freight_services.service_id", name="quotes_service_id_fkey")
    ),
    sa.Column("is_residential", sa.Boolean, server_default=sa.text("false")),
    sa.Column("cargo_description", sa.Text),
    sa.Column("cargo_weight", sa.Numeric(10, 2)),
    sa.Column("cargo_weight_unit", sa.String(10), server_default=sa.text("'kg'::character varying")),
    sa.Column("cargo_volume", sa.Numeric(10, 2)),
    sa.Column("cargo_volume_unit", sa.String(10), server_default=sa.text("'m3'::character varying")),
    sa.Column("cargo_value", sa.Numeric(12, 2)),
    sa.Column("cargo_currency", sa.String(3), server_default=sa.text("'USD'::character varying")),
    sa.Column("special_requirements", sa.Text),
    sa.Column("quote_status", sa.String(20), server_default=sa.text("'pending'::character varying")),
    sa.Column("pricing_snapshot", pg.JSONB),
    sa.Column("quoted_price", sa.Numeric(12, 2)),
    sa.Column("quoted_at", sa.DateTime()),
    sa.Column("valid_until", sa.DateTime()),
    sa.Column("converted_to_shipment_id", sa.Uuid),
    sa.Column("converted_at", sa.DateTime()),
    _version(),
    sa.Column("notes", sa.Text),
    *_timestamps(),
    sa.UniqueConstraint("idempotency_key", name="quotes_idempotency_key_key"),
    sa.CheckConstraint(_in("quote_status", QUOTE_STATUSES), name="quotes_quote_status_check"),
    sa.CheckConstraint(
        "(converted_to_shipment_id IS NULL AND converted_at IS NULL) OR "
        "(converted_to_shipment_id IS NOT NULL AND converted_at IS NOT NULL)",
        name="quote_single_conversion",
    ),
)
sa.Index("idx_quotes_user", quotes.c.user_id)
sa.Index("idx_quotes_status", quotes.c.quote_status)
sa.Index(
    "idx_quotes_idempotency",
    quotes.c.idempotency_key,
    postgresql_where=sa.text("idempotency_key IS NOT NULL"),
)
sa.Index(
    "idx_quotes_valid_until",
    quotes.c.valid_until,
    postgresql_where=sa.text("quote_status = 'quoted'"),
)

# --- tracking_numbers (numbers drawn from the sequence tracking_number_seq) ------------------------

tracking_numbers = sa.Table(
    "tracking_numbers",
    metadata,
    sa.Column("tracking_id", sa.BigInteger, primary_key=True),
    sa.Column("tracking_number", sa.String(50), nullable=False),
    sa.Column("shipment_id", sa.Uuid),
    sa.Column("allocated_at", sa.DateTime(), server_default=_NOW),
    sa.Column("used_at", sa.DateTime()),
    sa.Column("is_used", sa.Boolean, server_default=sa.text("false")),
    sa.UniqueConstraint("tracking_number", name="tracking_numbers_tracking_number_key"),
    sa.UniqueConstraint("shipment_id", name="tracking_numbers_shipment_id_key"),
    sa.CheckConstraint(
        "(is_used = false AND used_at IS NULL) OR (is_used = true AND used_at IS NOT NULL)",
        name="tracking_must_be_used",
    ),
)
sa.Index("idx_tracking_unused", tracking_numbers.c.is_used, postgresql_where=sa.text("is_used = false"))

# --- shipments -----------------------------------------------------------------------------------

SHIPMENT_STATUSES = (
    "pending",
    "confirmed",
    "picked_up",
    "in_transit",
    "customs_clearance",
    "out_for_delivery",
    "delivered",
    "cancelled",
    "returned",
    "exception",
)
PAYMENT_STATUSES = ("unpaid", "pending", "partial", "paid", "refunded", "failed")

shipments = sa.Table(
    "shipments",
    metadata,
    sa.Column("shipment_id", sa.Uuid, primary_key=True, server_default=_UUID_DEFAULT),
    sa.Column("tracking_number", sa.String(50), nullable=False),
    sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey("users.user_id", name="shipments_user_id_fkey", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("quote_id", sa.Uuid, sa.ForeignKey("quotes.quote_id", name="shipments_quote_id_fkey")),
    sa.Column(
        "service_id",
        sa.Integer,
        sa.ForeignKey("freight_services.service_id", name="shipments_service_id_fkey"),
        nullable=False,
    ),
    sa.Column(
        "origin_country_id",
        sa.Integer,
        sa.ForeignKey("countries.country_id", name="shipments_origin_country_id_fkey"),
        nullable=False,
    ),
    sa.Column(
        "destination_country_id",
        sa.Integer,
        sa.ForeignKey("countries.country_id", name="shipments_destination_country_id_fkey"),
        nullable=False,
    ),
    sa.Column("origin_address", sa.Text),
    sa.Column("destination_address", sa.Text),
    sa.Column("is_residential_delivery", sa.Boolean, server_default=sa.text("false")),
    sa.Column("cargo_description", sa.Text),
    sa.Column("cargo_weight", sa.Numeric(10, 2)),
    sa.Column("cargo_weight_unit", sa.String(10), server_default=sa.text("'kg'::character varying")),
    sa.Column("cargo_volume", sa.Numeric(10, 2)),
    sa.Column("cargo_volume_unit", sa.String(10), server_default=sa.text("'m3'::character varying")),
    sa.Column("declared_value", sa.Numeric(12, 2)),
    sa.Column("currency", sa.String(3), server_default=sa.text("'USD'::character varying")),
    sa.Column("shipment_status", sa.String(30), server_default=sa.text("'pending'::character varying")),
    sa.Column("previous_status", sa.String(30)),
    sa.Column("status_changed_at", sa.DateTime()),
    sa.Column("estimated_pickup_date", sa.Date),
    sa.Column("actual_pickup_date", sa.Date),
    sa.Column("estimated_delivery_date", sa.Date),
    sa.Column("actual_delivery_date", sa.Date),
    sa.Column("total_cost", sa.Numeric(12, 2)),
    sa.Column("payment_status", sa.String(20), server_default=sa.text("'unpaid'::character varying")),
    sa.Column("amount_paid", sa.Numeric(12, 2), nullable=False, server_default=sa.text("0")),
    sa.Column("amount_due", sa.Numeric(12, 2)),
    sa.Column("special_instructions", sa.Text),
    _version(),
    sa.Column("deleted_at", sa.DateTime()),
    *_timestamps(),
    sa.UniqueConstraint("tracking_number", name="shipments_tracking_number_key"),
    sa.CheckConstraint(_in("shipment_status", SHIPMENT_STATUSES), name="shipments_shipment_status_check"),
    sa.CheckConstraint(_in("payment_status", PAYMENT_STATUSES), name="shipments_payment_status_check"),
    # Never NULL: amount_paid in [0, total_cost], nothing paid without a total, amount_due >= 0.
    sa.CheckConstraint(
        "amount_paid >= 0 AND amount_paid <= COALESCE(total_cost, 0) "
        "AND (total_cost IS NULL OR total_cost >= 0) AND (amount_due IS NULL OR amount_due >= 0)",
        name="shipment_payment_check",
    ),
)
sa.Index("idx_shipments_tracking", shipments.c.tracking_number)
sa.Index("idx_shipments_user", shipments.c.user_id)
sa.Index("idx_shipments_status", shipments.c.shipment_status)
sa.Index("idx_shipments_dates", shipments.c.estimated_delivery_date)
sa.Index(
    "idx_shipments_payment",
    shipments.c.payment_status,
    postgresql_where=sa.text("payment_status <> 'paid'"),
)
sa.Index("idx_shipments_active", shipments.c.deleted_at, postgresql_where=sa.text("deleted_at IS NULL"))
# One shipment per quote (backstop of convert_quote_to_shipment).
sa.Index(
    "shipments_quote_id_key",
    shipments.c.quote_id,
    unique=True,
    postgresql_where=sa.text("quote_id IS NOT NULL"),
)

# --- shipment_tracking_events (partitioned) + external event ids ---------------------------------

shipment_tracking_events = sa.Table(
    "shipment_tracking_events",
    metadata,
    sa.Column("event_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column(
        "shipment_id",
        sa.Uuid,
        sa.ForeignKey(
            "shipments.shipment_id", name="shipment_tracking_events_shipment_id_fkey", ondelete="CASCADE"
        ),
        nullable=False,
    ),
    sa.Column("event_status", sa.String(30), nullable=False),
    sa.Column("event_location", sa.String(255)),
    sa.Column(
        "event_country_id",
        sa.Integer,
        sa.ForeignKey("countries.country_id", name="shipment_tracking_events_event_country_id_fkey"),
    ),
    sa.Column("event_description", sa.Text),
    sa.Column("latitude", sa.Numeric(10, 8)),
    sa.Column("longitude", sa.Numeric(11, 8)),
    sa.Column("event_timestamp", sa.DateTime(), primary_key=True),
    sa.Column("event_source", sa.String(50)),
    sa.Column("external_event_id", sa.String(100)),
    sa.Column("created_by", sa.String(100)),
    sa.Column("created_at", sa.DateTime(), server_default=_NOW),
    postgresql_partition_by="RANGE (event_timestamp)",
)
sa.Index(
    "idx_tracking_shipment",
    shipment_tracking_events.c.shipment_id,
    shipment_tracking_events.c.event_timestamp.desc(),
)
sa.Index(
    "idx_tracking_external",
    shipment_tracking_events.c.external_event_id,
    postgresql_where=sa.text("external_event_id IS NOT NULL"),
)

# Replaces the seed's unique index on (shipment_id, external_event_id), which PostgreSQL refuses on
# the partitioned table; filled by a trigger on shipment_tracking_events.
tracking_event_external_ids = sa.Table(
    "tracking_event_external_ids",
    metadata,
    sa.Column(
        "shipment_id",
        sa.Uuid,
        sa.ForeignKey(
            "shipments.shipment_id", name="tracking_event_external_ids_shipment_id_fkey", ondelete="CASCADE"
        ),
        primary_key=True,
    ),
    sa.Column("external_event_id", sa.String(100), primary_key=True),
    sa.Column("event_id", sa.BigInteger, nullable=False),
    sa.Column("event_timestamp", sa.DateTime(), nullable=False),
    sa.Column("created_at", sa.DateTime(), server_default=_NOW),
)

# --- capacity_bookings, shipment_reservations ----------------------------------------------------

capacity_bookings = sa.Table(
    "capacity_bookings",
    metadata,
    sa.Column("booking_id", sa.Uuid, primary_key=True, server_default=_UUID_DEFAULT),
    sa.Column(
        "service_id",
        sa.Integer,
        sa.ForeignKey("freight_services.service_id", name="capacity_bookings_service_id_fkey"),
        nullable=False,
    ),
    sa.Column("booking_date", sa.Date, nullable=False),
    sa.Column("reserved_weight_kg", sa.Numeric(12, 2), nullable=False, server_default=sa.text("0")),
    sa.Column("reserved_volume_m3", sa.Numeric(12, 2), nullable=False, server_default=sa.text("0")),
    # NULL = not limited.
    sa.Column("max_weight_kg", sa.Numeric(12, 2)),
    sa.Column("max_volume_m3", sa.Numeric(12, 2)),
    _version(),
    *_timestamps(),
    sa.CheckConstraint("reserved_weight_kg <= max_weight_kg", name="capacity_weight_check"),
    sa.CheckConstraint("reserved_volume_m3 <= max_volume_m3", name="capacity_volume_check"),
    sa.UniqueConstraint("service_id", "booking_date", name="capacity_bookings_service_id_booking_date_key"),
)
sa.Index("idx_capacity_service_date", capacity_bookings.c.service_id, capacity_bookings.c.booking_date)

shipment_reservations = sa.Table(
    "shipment_reservations",
    metadata,
    sa.Column("reservation_id", sa.Uuid, primary_key=True, server_default=_UUID_DEFAULT),
    sa.Column(
        "shipment_id",
        sa.Uuid,
        sa.ForeignKey(
            "shipments.shipment_id", name="shipment_reservations_shipment_id_fkey", ondelete="CASCADE"
        ),
        nullable=False,
    ),
    sa.Column(
        "booking_id",
        sa.Uuid,
        sa.ForeignKey("capacity_bookings.booking_id", name="shipment_reservations_booking_id_fkey"),
        nullable=False,
    ),
    sa.Column("reserved_weight_kg", sa.Numeric(12, 2), nullable=False),
    sa.Column("reserved_volume_m3", sa.Numeric(12, 2), nullable=False),
    sa.Column("reservation_status", sa.String(20), server_default=sa.text("'active'::character varying")),
    sa.Column("created_at", sa.DateTime(), server_default=_NOW),
    sa.Column("released_at", sa.DateTime()),
    sa.UniqueConstraint("shipment_id", "booking_id", name="shipment_reservations_shipment_id_booking_id_key"),
    sa.CheckConstraint(
        _in("reservation_status", ("active", "released", "confirmed")),
        name="shipment_reservations_reservation_status_check",
    ),
)
sa.Index("idx_reservations_shipment", shipment_reservations.c.shipment_id)
sa.Index("idx_reservations_booking", shipment_reservations.c.booking_id)

# --- payment_transactions ------------------------------------------------------------------------

payment_transactions = sa.Table(
    "payment_transactions",
    metadata,
    sa.Column("transaction_id", sa.Uuid, primary_key=True, server_default=_UUID_DEFAULT),
    sa.Column(
        "shipment_id",
        sa.Uuid,
        sa.ForeignKey(
            "shipments.shipment_id", name="payment_transactions_shipment_id_fkey", ondelete="CASCADE"
        ),
        nullable=False,
    ),
    sa.Column("idempotency_key", sa.String(100), nullable=False),
    sa.Column("external_transaction_id", sa.String(255)),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("transaction_type", sa.String(20), nullable=False),
    sa.Column("payment_method", sa.String(30)),
    sa.Column("transaction_status", sa.String(20), server_default=sa.text("'pending'::character varying")),
    sa.Column("gateway_provider", sa.String(50)),
    sa.Column("gateway_response", pg.JSONB),
    sa.Column("processed_at", sa.DateTime()),
    sa.Column("failed_reason", sa.Text),
    *_timestamps(),
    sa.UniqueConstraint("idempotency_key", name="payment_transactions_idempotency_key_key"),
    sa.CheckConstraint(
        _in("transaction_type", ("payment", "refund", "chargeback", "adjustment")),
        name="payment_transactions_transaction_type_check",
    ),
    sa.CheckConstraint(
        _in("payment_method", ("credit_card", "bank_transfer", "mobile_money", "cash", "other")),
        name="payment_transactions_payment_method_check",
    ),
    sa.CheckConstraint(
        _in("transaction_status", ("pending", "processing", "completed", "failed", "cancelled", "refunded")),
        name="payment_transactions_transaction_status_check",
    ),
)
sa.Index("idx_payments_shipment", payment_transactions.c.shipment_id)
sa.Index("idx_payments_idempotency", payment_transactions.c.idempotency_key)
sa.Index("idx_payments_status", payment_transactions.c.transaction_status)
sa.Index(
    "idx_payments_external",
    payment_transactions.c.external_transaction_id,
    postgresql_where=sa.text("external_transaction_id IS NOT NULL"),
)

# --- notification_queue --------------------------------------------------------------------------

notification_queue = sa.Table(
    "notification_queue",
    metadata,
    sa.Column("queue_id", sa.BigInteger, primary_key=True),
    sa.Column(
        "user_id",
        sa.Uuid,
        sa.ForeignKey("users.user_id", name="notification_queue_user_id_fkey", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column(
        "shipment_id",
        sa.Uuid,
        sa.ForeignKey(
            "shipments.shipment_id", name="notification_queue_shipment_id_fkey", ondelete="CASCADE"
        ),
    ),
    sa.Column("notification_type", sa.String(50), nullable=False),
    sa.Column("dedup_key", sa.String(200), nullable=False),
    sa.Column("title", sa.String(255), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("metadata", pg.JSONB),
    sa.Column(
        "send_via",
        pg.ARRAY(sa.String(20)),
        server_default=sa.text("ARRAY['in_app'::text]"),  # as PostgreSQL stores the seed's default
    ),
    sa.Column("status", sa.String(20), server_default=sa.text("'pending'::character varying")),
    sa.Column("attempts", sa.Integer, server_default=sa.text("0")),
    sa.Column("max_attempts", sa.Integer, server_default=sa.text("3")),
    sa.Column("next_retry_at", sa.DateTime()),
    sa.Column("last_error", sa.Text),
    sa.Column("sent_at", sa.DateTime()),
    sa.Column("delivered_at", sa.DateTime()),
    sa.Column("read_at", sa.DateTime()),
    *_timestamps(),
    # 0004_notifications: the dispatcher's lease, channels already delivered, and the `dead` state.
    sa.Column("locked_by", sa.String(200)),
    sa.Column("locked_until", sa.DateTime()),
    sa.Column(
        "channels_done",
        pg.ARRAY(sa.String(20)),
        nullable=False,
        server_default=sa.text("'{}'::character varying[]"),
    ),
    sa.UniqueConstraint("dedup_key", name="notification_queue_dedup_key_key"),
    sa.CheckConstraint(
        _in("status", ("pending", "processing", "sent", "failed", "cancelled", "dead")),
        name="notification_queue_status_check",
    ),
)
sa.Index(
    "idx_notif_queue_due",
    sa.func.coalesce(
        notification_queue.c.next_retry_at,
        notification_queue.c.created_at,
        sa.text("'-infinity'::timestamp without time zone"),
    ),
    postgresql_where=sa.text("status IN ('pending', 'failed')"),
)
sa.Index(
    "idx_notif_queue_lease",
    notification_queue.c.locked_until,
    postgresql_where=sa.text("status = 'processing'"),
)
sa.Index("idx_notif_queue_dead", notification_queue.c.updated_at, postgresql_where=sa.text("status = 'dead'"))
# (0004_notifications drops the seed's idx_notif_queue_status and idx_notif_queue_dedup.)
sa.Index("idx_notif_queue_user", notification_queue.c.user_id)

# --- audit_log (partitioned) ---------------------------------------------------------------------

audit_log = sa.Table(
    "audit_log",
    metadata,
    # The primary key includes the partition key (a PK on a partitioned table must).
    sa.Column("audit_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(100), nullable=False),
    sa.Column("record_id", sa.String(100), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.user_id", name="audit_log_user_id_fkey")),
    sa.Column("performed_by", sa.String(100)),
    sa.Column("ip_address", pg.INET),
    sa.Column("old_values", pg.JSONB),
    sa.Column("new_values", pg.JSONB),
    sa.Column("changed_fields", pg.ARRAY(sa.Text)),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.DateTime(), primary_key=True, server_default=_NOW),
    sa.CheckConstraint(_in("action", ("INSERT", "UPDATE", "DELETE")), name="audit_log_action_check"),
    postgresql_partition_by="RANGE (created_at)",
)
sa.Index("idx_audit_table_record", audit_log.c.table_name, audit_log.c.record_id)
sa.Index("idx_audit_user", audit_log.c.user_id, postgresql_where=sa.text("user_id IS NOT NULL"))
sa.Index("idx_audit_created", audit_log.c.created_at.desc())
