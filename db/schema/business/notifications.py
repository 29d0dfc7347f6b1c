"""notification_queue: the notifications waiting for, or done by, the dispatcher (with 0004_notifications'
lease, delivered channels and `dead` state)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata
from db.schema.business.columns import check_in, timestamps

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
    *timestamps(),
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
        check_in("status", ("pending", "processing", "sent", "failed", "cancelled", "dead")),
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
