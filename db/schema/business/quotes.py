"""Who asks for what: users, the reference data a quote names (countries, freight services), and quotes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata
from db.schema.business.columns import UUID_DEFAULT, check_in, timestamps, version

# --- users ---------------------------------------------------------------------------------------

users = sa.Table(
    "users",
    metadata,
    sa.Column("user_id", sa.Uuid, primary_key=True, server_default=UUID_DEFAULT),
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
    version(),
    *timestamps(),
    sa.Column("last_login", sa.DateTime()),
    sa.UniqueConstraint("email", name="users_email_key"),
    sa.CheckConstraint(check_in("user_type", ("private", "business")), name="users_user_type_check"),
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
    *timestamps(),
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
    *timestamps(),
    sa.CheckConstraint(
        check_in("service_type", ("sea", "air", "land")), name="freight_services_service_type_check"
    ),
)
sa.Index("idx_freight_service_type", freight_services.c.service_type)
sa.Index("idx_freight_active", freight_services.c.is_active, postgresql_where=sa.text("is_active = true"))

# --- quotes --------------------------------------------------------------------------------------

QUOTE_STATUSES = ("pending", "calculating", "quoted", "accepted", "rejected", "expired", "converted")

quotes = sa.Table(
    "quotes",
    metadata,
    sa.Column("quote_id", sa.Uuid, primary_key=True, server_default=UUID_DEFAULT),
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
    version(),
    sa.Column("notes", sa.Text),
    *timestamps(),
    sa.UniqueConstraint("idempotency_key", name="quotes_idempotency_key_key"),
    sa.CheckConstraint(check_in("quote_status", QUOTE_STATUSES), name="quotes_quote_status_check"),
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
