"""payment_transactions: one row per payment, refund or adjustment of a shipment (process_payment and
the payment-event worker write it)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata
from db.schema.business.columns import UUID_DEFAULT, check_in, timestamps

payment_transactions = sa.Table(
    "payment_transactions",
    metadata,
    sa.Column("transaction_id", sa.Uuid, primary_key=True, server_default=UUID_DEFAULT),
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
    *timestamps(),
    sa.UniqueConstraint("idempotency_key", name="payment_transactions_idempotency_key_key"),
    sa.CheckConstraint(
        check_in("transaction_type", ("payment", "refund", "chargeback", "adjustment")),
        name="payment_transactions_transaction_type_check",
    ),
    sa.CheckConstraint(
        check_in("payment_method", ("credit_card", "bank_transfer", "mobile_money", "cash", "other")),
        name="payment_transactions_payment_method_check",
    ),
    sa.CheckConstraint(
        check_in(
            "transaction_status", ("pending", "processing", "completed", "failed", "cancelled", "refunded")
        ),
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
