"""Notification delivery: leases, a terminal `dead` state, per-channel progress, the due-time index.

Revision ID: 0004_notifications
Revises: 0003_schedule

- `locked_by` / `locked_until`: the lease of a dispatcher on a `processing` row. A row whose lease
  passed (its dispatcher died) is put back to `failed` (or `dead` once its attempts are used up:
  a claim counts as an attempt, so a notification that kills its dispatcher cannot loop forever).
- `channels_done`: the channels of `send_via` already delivered, so that a retry after a partial
  failure (email sent, SMS provider down) does not send the email again.
- `dead`: DECISION: added to the status CHECK rather than reusing `failed` (which means "will be
  retried"). `dead` is terminal: attempts used up or a permanent error (HTTP 4xx, invalid address,
  unknown channel); the dashboard/CLI lists these rows and ops may retry them (attempts reset).
- `idx_notif_queue_due`: the claim walks rows in due order (`coalesce(next_retry_at, created_at)`:
  new rows FIFO, retries when they come due) and stops after one batch. It replaces the seed's
  `idx_notif_queue_status (status, next_retry_at)`, which cannot give that order for two statuses
  at once (PostgreSQL sorts every due row for each batch): dropped.
- The seed's `idx_notif_queue_dedup (dedup_key)` duplicates the index of the UNIQUE (dedup_key)
  constraint: dropped. Every index costs each insert and each status change (non-HOT updates):
  quote expiry inserts a notification per quote (bench/families/quote_expiry.py).
"""

from alembic import op

revision = "0004_notifications"
down_revision = "0003_schedule"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE notification_queue
            ADD COLUMN locked_by VARCHAR(200),
            ADD COLUMN locked_until TIMESTAMP,
            ADD COLUMN channels_done VARCHAR(20)[] NOT NULL DEFAULT '{}';

        ALTER TABLE notification_queue DROP CONSTRAINT notification_queue_status_check;
        ALTER TABLE notification_queue ADD CONSTRAINT notification_queue_status_check CHECK (status IN (
            'pending', 'processing', 'sent', 'failed', 'cancelled', 'dead'
        ));

        -- notification_claim_due: due rows in due order.
        CREATE INDEX idx_notif_queue_due
            ON notification_queue ((coalesce(next_retry_at, created_at, '-infinity'::timestamp)))
            WHERE status IN ('pending', 'failed');
        -- notification_reap_leases: processing rows by lease end.
        CREATE INDEX idx_notif_queue_lease ON notification_queue (locked_until) WHERE status = 'processing';
        -- notification_list_dead: what ops look at.
        CREATE INDEX idx_notif_queue_dead ON notification_queue (updated_at) WHERE status = 'dead';

        DROP INDEX idx_notif_queue_status;
        DROP INDEX idx_notif_queue_dedup;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        CREATE INDEX idx_notif_queue_status ON notification_queue(status, next_retry_at)
            WHERE status IN ('pending', 'failed');
        CREATE INDEX idx_notif_queue_dedup ON notification_queue(dedup_key);
        DROP INDEX IF EXISTS idx_notif_queue_dead;
        DROP INDEX IF EXISTS idx_notif_queue_lease;
        DROP INDEX IF EXISTS idx_notif_queue_due;
        -- Dead rows become failed (the nearest state the old CHECK knows); they are not retried
        -- because their attempts are used up.
        UPDATE notification_queue SET status = 'failed' WHERE status = 'dead';
        ALTER TABLE notification_queue DROP CONSTRAINT notification_queue_status_check;
        ALTER TABLE notification_queue ADD CONSTRAINT notification_queue_status_check CHECK (status IN (
            'pending', 'processing', 'sent', 'failed', 'cancelled'
        ));
        ALTER TABLE notification_queue
            DROP COLUMN channels_done,
            DROP COLUMN locked_until,
            DROP COLUMN locked_by;
        """
    )
