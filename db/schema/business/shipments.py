"""Shipments and what hangs on them: tracking numbers, shipments, their tracking events (partitioned)
and external event ids, daily capacity bookings and the shipments' reservations of them."""

from __future__ import annotations

import sqlalchemy as sa

from db.schema.base import metadata
from db.schema.business.columns import NOW, UUID_DEFAULT, check_in, timestamps, version

# --- tracking_numbers (numbers drawn from the sequence tracking_number_seq) ------------------------

tracking_numbers = sa.Table(
    "tracking_numbers",
    metadata,
    sa.Column("tracking_id", sa.BigInteger, primary_key=True),
    sa.Column("tracking_number", sa.String(50), nullable=False),
    sa.Column("shipment_id", sa.Uuid),
    sa.Column("allocated_at", sa.DateTime(), server_default=NOW),
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
    sa.Column("shipment_id", sa.Uuid, primary_key=True, server_default=UUID_DEFAULT),
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
    version(),
    sa.Column("deleted_at", sa.DateTime()),
    *timestamps(),
    sa.UniqueConstraint("tracking_number", name="shipments_tracking_number_key"),
    sa.CheckConstraint(
        check_in("shipment_status", SHIPMENT_STATUSES), name="shipments_shipment_status_check"
    ),
    sa.CheckConstraint(check_in("payment_status", PAYMENT_STATUSES), name="shipments_payment_status_check"),
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
    sa.Column("created_at", sa.DateTime(), server_default=NOW),
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
    sa.Column("created_at", sa.DateTime(), server_default=NOW),
)

# --- capacity_bookings, shipment_reservations ----------------------------------------------------

capacity_bookings = sa.Table(
    "capacity_bookings",
    metadata,
    sa.Column("booking_id", sa.Uuid, primary_key=True, server_default=UUID_DEFAULT),
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
    version(),
    *timestamps(),
    sa.CheckConstraint("reserved_weight_kg <= max_weight_kg", name="capacity_weight_check"),
    sa.CheckConstraint("reserved_volume_m3 <= max_volume_m3", name="capacity_volume_check"),
    sa.UniqueConstraint("service_id", "booking_date", name="capacity_bookings_service_id_booking_date_key"),
)
sa.Index("idx_capacity_service_date", capacity_bookings.c.service_id, capacity_bookings.c.booking_date)

shipment_reservations = sa.Table(
    "shipment_reservations",
    metadata,
    sa.Column("reservation_id", sa.Uuid, primary_key=True, server_default=UUID_DEFAULT),
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
    sa.Column("created_at", sa.DateTime(), server_default=NOW),
    sa.Column("released_at", sa.DateTime()),
    sa.UniqueConstraint("shipment_id", "booking_id", name="shipment_reservations_shipment_id_booking_id_key"),
    sa.CheckConstraint(
        check_in("reservation_status", ("active", "released", "confirmed")),
        name="shipment_reservations_reservation_status_check",
    ),
)
sa.Index("idx_reservations_shipment", shipment_reservations.c.shipment_id)
sa.Index("idx_reservations_booking", shipment_reservations.c.booking_id)
