"""Payments from real gateways, processed in batches.

Revision ID: 0015_payment_gateways
Revises: 0014_job_stats

- `event_type` holds the gateway's own type (Stripe's `charge.refunded`, Paystack's
  `charge.success`, ...), so its CHECK goes; an event type no adapter handles is stored `ignored`,
  without shipment or idempotency key (both columns become nullable).
- `normalized`: the internal event an adapter made of the gateway's body (`payload`, kept raw), the
  document processing reads; NULL when the payload is itself that document (a Standard Webhooks
  provider's, and every event stored before) and for ignored events.
- `shipment_id` may also be NULL for a refund or dispute whose gateway names only the payment:
  processing finds the shipment through the payment's idempotency key.
- `next_attempt_at`: when an open event is due (processing claims due events in batches; a
  waiting or failing event backs off).
- status `dead`: an event whose processing failed on every attempt; ops replay it like an
  unmatched or rejected one.
- A payment refunded before this revision (its row `refunded`, no refund row) gets its refund row:
  refunds are rows of their own now (jobs/payments/apply.py, `movement_key`), and the drift check
  counts a refunded payment's amount and subtracts its refunds.
"""

from alembic import op

revision = "0015_payment_gateways"
down_revision = "0014_job_stats"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE payment_events
            DROP CONSTRAINT payment_events_event_type_check,
            DROP CONSTRAINT payment_events_status_check,
            DROP CONSTRAINT payment_events_processed_at_check,
            ALTER COLUMN event_type TYPE varchar(100),
            ALTER COLUMN shipment_id DROP NOT NULL,
            ALTER COLUMN idempotency_key DROP NOT NULL,
            ADD COLUMN normalized jsonb,
            ADD COLUMN next_attempt_at timestamptz NOT NULL DEFAULT now(),
            ADD CONSTRAINT payment_events_status_check CHECK (status IN (
                'received', 'processing', 'applied', 'ignored', 'unmatched', 'rejected', 'dead')),
            ADD CONSTRAINT payment_events_processed_at_check CHECK (
                (status IN ('applied', 'ignored', 'unmatched', 'rejected', 'dead'))
                = (processed_at IS NOT NULL));
        INSERT INTO payment_transactions (shipment_id, idempotency_key, external_transaction_id, amount,
                                          currency, transaction_type, transaction_status, gateway_provider,
                                          gateway_response, processed_at)
        SELECT shipment_id,
               'refund:' || left(encode(sha256(convert_to(idempotency_key, 'UTF8')), 'hex'), 24) || '\\:full',
               'full', amount, currency, 'refund', 'completed', gateway_provider, gateway_response,
               processed_at
          FROM payment_transactions
         WHERE transaction_type = 'payment' AND transaction_status = 'refunded'
            ON CONFLICT (idempotency_key) DO NOTHING;
        -- Reconciliation finds overdue events by next_attempt_at now (payment_events_due_idx), and
        -- no query reads events by key or shipment but the open ones (the partial indexes below):
        -- three indexes fewer to write for every event stored and every outcome.
        DROP INDEX payment_events_open_idx;
        DROP INDEX payment_events_idempotency_key_idx;
        DROP INDEX payment_events_shipment_id_idx;
        DROP INDEX payment_events_problem_idx;
        CREATE INDEX payment_events_problem_idx ON payment_events (received_at)
            WHERE status IN ('unmatched', 'rejected', 'dead');
        -- The batch claim: open events that are due, soonest first.
        CREATE INDEX payment_events_due_idx ON payment_events (next_attempt_at)
            WHERE status IN ('received', 'processing');
        -- A claimed shipment's open events, in the order they arrived.
        CREATE INDEX payment_events_shipment_open_idx ON payment_events (shipment_id, id)
            WHERE status IN ('received', 'processing');
        -- Open refunds and disputes that name only their payment, by its key.
        CREATE INDEX payment_events_orphan_idx ON payment_events (idempotency_key)
            WHERE shipment_id IS NULL AND status IN ('received', 'processing');
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX payment_events_orphan_idx;
        DROP INDEX payment_events_shipment_open_idx;
        DROP INDEX payment_events_due_idx;
        DROP INDEX payment_events_problem_idx;
        CREATE INDEX payment_events_open_idx ON payment_events (received_at)
            WHERE status IN ('received', 'processing');
        CREATE INDEX payment_events_idempotency_key_idx ON payment_events (idempotency_key);
        CREATE INDEX payment_events_shipment_id_idx ON payment_events (shipment_id);
        CREATE INDEX payment_events_problem_idx ON payment_events (received_at)
            WHERE status IN ('unmatched', 'rejected');
        DELETE FROM payment_events
         WHERE shipment_id IS NULL OR status = 'dead'
            OR event_type NOT IN ('payment.processing', 'payment.succeeded', 'payment.failed',
                                  'payment.refunded');
        UPDATE payment_events SET payload = normalized WHERE normalized IS NOT NULL;
        DELETE FROM payment_transactions
         WHERE transaction_type = 'refund' AND idempotency_key LIKE 'refund:%\\:full';
        ALTER TABLE payment_events
            DROP CONSTRAINT payment_events_status_check,
            DROP CONSTRAINT payment_events_processed_at_check,
            DROP COLUMN next_attempt_at,
            DROP COLUMN normalized,
            ALTER COLUMN idempotency_key SET NOT NULL,
            ALTER COLUMN shipment_id SET NOT NULL,
            ALTER COLUMN event_type TYPE varchar(40),
            ADD CONSTRAINT payment_events_event_type_check CHECK (event_type IN (
                'payment.processing', 'payment.succeeded', 'payment.failed', 'payment.refunded')),
            ADD CONSTRAINT payment_events_status_check CHECK (status IN (
                'received', 'processing', 'applied', 'ignored', 'unmatched', 'rejected')),
            ADD CONSTRAINT payment_events_processed_at_check CHECK (
                (status IN ('applied', 'ignored', 'unmatched', 'rejected')) = (processed_at IS NOT NULL));
        """
    )
