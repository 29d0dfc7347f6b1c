"""Payment-gateway callbacks: the inbox of raw webhook events (`payment_events`).

Revision ID: 0006_payments
Revises: 0003_schedule

One row per (provider, event id) received by `POST /webhooks/payments/{provider}`; a duplicate
delivery hits the unique key and changes nothing. Its status says where processing stands:
  received    stored, its processing job enqueued in the same transaction
  processing  tried, waiting for a retry (shipment not committed yet, refund before its payment)
  applied     its transition was applied to payment_transactions / shipments
  ignored     recorded, but a no-op (late or repeated transition)
  unmatched   no such shipment (or payment) after the retry window: dead, ops may replay it
  rejected    refused (would overpay the shipment, currency or key mismatch): dead, ops may replay it
"""

from alembic import op

revision = "0006_payments"
down_revision = "0003_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE payment_events (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            provider        varchar(50) NOT NULL,
            event_id        varchar(255) NOT NULL,
            event_type      varchar(40) NOT NULL
                            CONSTRAINT payment_events_event_type_check CHECK (event_type IN (
                                'payment.processing', 'payment.succeeded', 'payment.failed',
                                'payment.refunded')),
            payload         jsonb NOT NULL,
            shipment_id     uuid NOT NULL,  -- no foreign key: an event may name an unknown shipment
            idempotency_key varchar(100) NOT NULL,
            created_at      timestamptz NOT NULL,  -- the gateway's "created"
            received_at     timestamptz NOT NULL DEFAULT now(),
            status          varchar(20) NOT NULL DEFAULT 'received'
                            CONSTRAINT payment_events_status_check CHECK (status IN (
                                'received', 'processing', 'applied', 'ignored', 'unmatched', 'rejected')),
            attempts        integer NOT NULL DEFAULT 0,
            error           text,
            processed_at    timestamptz,
            replayed_by     varchar(100),
            replayed_at     timestamptz,
            CONSTRAINT payment_events_provider_event_id_key UNIQUE (provider, event_id),
            CONSTRAINT payment_events_processed_at_check CHECK (
                (status IN ('applied', 'ignored', 'unmatched', 'rejected')) = (processed_at IS NOT NULL))
        );
        -- Reconciliation: events not finished yet, oldest first.
        CREATE INDEX payment_events_open_idx ON payment_events (received_at)
            WHERE status IN ('received', 'processing');
        -- The dashboard's problem list (unmatched / rejected), newest first.
        CREATE INDEX payment_events_problem_idx ON payment_events (received_at)
            WHERE status IN ('unmatched', 'rejected');
        -- Every event of one payment (the dashboard's shipment and transaction views).
        CREATE INDEX payment_events_idempotency_key_idx ON payment_events (idempotency_key);
        CREATE INDEX payment_events_shipment_id_idx ON payment_events (shipment_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS payment_events")
