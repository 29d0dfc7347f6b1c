"""Cheaper writes on the jobs hot path.

- `jobs_publishable_idx` becomes (state, eta): the relay's claim reads the queued rows in eta
  order without stepping over scheduled and retrying ones, and promotion reads those without
  stepping over thousands of queued rows waiting for the relay.
- `jobs_enqueued_by_id_idx` goes: no query filters on `enqueued_by`, and every write of a jobs row
  paid for its entry.
- The relay is woken only by inserts that leave a row for it: `enqueue()` outside a caller's
  transaction publishes its jobs itself right after they commit (workers/enqueue.py), and those
  rows arrive already marked published.

Revision ID: 0009_ledger_hot_path
Revises: 0008_merge_job_families
"""

from alembic import op

revision = "0009_ledger_hot_path"
down_revision = "0008_merge_job_families"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        DROP INDEX jobs_enqueued_by_id_idx;
        DROP INDEX jobs_publishable_idx;
        CREATE INDEX jobs_publishable_idx ON jobs (state, eta)
         WHERE published_at IS NULL AND state IN ('scheduled', 'queued', 'retrying');

        DROP TRIGGER jobs_notify_relay ON jobs;
        CREATE OR REPLACE FUNCTION jobs_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT 1 FROM inserted WHERE published_at IS NULL AND state = 'queued') THEN
                PERFORM pg_notify('skyport_jobs', '');
            END IF;
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER jobs_notify_relay AFTER INSERT ON jobs
            REFERENCING NEW TABLE AS inserted
            FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_relay();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TRIGGER jobs_notify_relay ON jobs;
        CREATE OR REPLACE FUNCTION jobs_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('skyport_jobs', '');
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER jobs_notify_relay AFTER INSERT ON jobs
            FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_relay();
        DROP INDEX jobs_publishable_idx;
        CREATE INDEX jobs_publishable_idx ON jobs (eta)
         WHERE published_at IS NULL AND state IN ('scheduled', 'queued', 'retrying');
        CREATE INDEX jobs_enqueued_by_id_idx ON jobs (enqueued_by, id);
        """
    )
