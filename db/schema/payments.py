"""The payment-gateway inbox (migrations 0006_payments, 0015_payment_gateways): one row per webhook
event received."""

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata
from db.states import EVENT_STATUSES, FINAL_EVENT_STATUSES, PROBLEM_EVENT_STATUSES


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


payment_events = sa.Table(
    "payment_events",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("provider", sa.String(50), nullable=False),
    sa.Column("event_id", sa.String(255), nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("payload", pg.JSONB, nullable=False),
    sa.Column("shipment_id", sa.Uuid),
    sa.Column("idempotency_key", sa.String(100)),
    sa.Column("normalized", pg.JSONB),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.Column("status", sa.String(20), nullable=False, server_default=sa.text("'received'")),
    sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("error", sa.Text),
    sa.Column("processed_at", sa.DateTime(timezone=True)),
    sa.Column("replayed_by", sa.String(100)),
    sa.Column("replayed_at", sa.DateTime(timezone=True)),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")),
    sa.UniqueConstraint("provider", "event_id", name="payment_events_provider_event_id_key"),
    sa.CheckConstraint(_in("status", EVENT_STATUSES), name="payment_events_status_check"),
    sa.CheckConstraint(
        f"({_in('status', FINAL_EVENT_STATUSES)}) = (processed_at IS NOT NULL)",
        name="payment_events_processed_at_check",
    ),
)
sa.Index(
    "payment_events_problem_idx",
    payment_events.c.received_at,
    postgresql_where=sa.text(_in("status", PROBLEM_EVENT_STATUSES)),
)
sa.Index(
    "payment_events_due_idx",
    payment_events.c.next_attempt_at,
    postgresql_where=sa.text("status IN ('received', 'processing')"),
)
sa.Index(
    "payment_events_shipment_open_idx",
    payment_events.c.shipment_id,
    payment_events.c.id,
    postgresql_where=sa.text("status IN ('received', 'processing')"),
)
sa.Index(
    "payment_events_orphan_idx",
    payment_events.c.idempotency_key,
    postgresql_where=sa.text("shipment_id IS NULL AND status IN ('received', 'processing')"),
)
