"""The job ledger: jobs, job_attempts, workers, and the NOTIFY that wakes the relay.

Revision ID: 0002_job_ledger
Revises: 0001_seed_schema
"""

from alembic import op

revision = "0002_job_ledger"
down_revision = "0001_seed_schema"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE jobs (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            actor         text NOT NULL,
            queue         text NOT NULL,
            args          jsonb NOT NULL DEFAULT '[]'::jsonb,
            kwargs        jsonb NOT NULL DEFAULT '{}'::jsonb,
            state         text NOT NULL,
            dedup_key     text,
            dedup_lock    text,
            dedup_window  interval,
            dedup_until   timestamptz,
            attempts      integer NOT NULL DEFAULT 0,
            max_attempts  integer NOT NULL,
            eta           timestamptz NOT NULL DEFAULT now(),
            published_at  timestamptz,
            message_id    text,
            enqueued_at   timestamptz NOT NULL DEFAULT now(),
            enqueued_by   text,
            started_at    timestamptz,
            finished_at   timestamptz,
            worker_id     text,
            last_error    text,
            CONSTRAINT jobs_state_check CHECK (state IN
                ('scheduled', 'queued', 'running', 'retrying', 'succeeded', 'dead', 'cancelled')),
            CONSTRAINT jobs_finished_at_check CHECK (
                (state IN ('succeeded', 'dead', 'cancelled')) = (finished_at IS NOT NULL)),
            CONSTRAINT jobs_attempts_check CHECK (attempts >= 0 AND max_attempts >= 1)
        );
        CREATE UNIQUE INDEX jobs_dedup_lock_key ON jobs (dedup_lock) WHERE dedup_lock IS NOT NULL;
        CREATE INDEX jobs_publishable_idx ON jobs (eta)
            WHERE published_at IS NULL AND state IN ('scheduled', 'queued', 'retrying');
        CREATE INDEX jobs_running_idx ON jobs (worker_id) WHERE state = 'running';
        CREATE INDEX jobs_published_queued_idx ON jobs (published_at) WHERE state = 'queued';
        CREATE INDEX jobs_state_id_idx ON jobs (state, id);
        CREATE INDEX jobs_actor_id_idx ON jobs (actor, id);
        CREATE INDEX jobs_finished_at_idx ON jobs (finished_at) WHERE finished_at IS NOT NULL;

        CREATE TABLE job_attempts (
            job_id       bigint NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
            attempt      integer NOT NULL,
            worker_id    text,
            started_at   timestamptz NOT NULL,
            finished_at  timestamptz NOT NULL,
            outcome      text NOT NULL,
            error        text,
            traceback    text,
            PRIMARY KEY (job_id, attempt),
            CONSTRAINT job_attempts_outcome_check CHECK (outcome IN
                ('succeeded', 'failed', 'lost', 'interrupted'))
        );

        CREATE TABLE workers (
            worker_id     text PRIMARY KEY,
            hostname      text NOT NULL,
            pid           integer NOT NULL,
            queues        text[],
            started_at    timestamptz NOT NULL DEFAULT now(),
            heartbeat_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX workers_heartbeat_at_idx ON workers (heartbeat_at);

        -- Wake the relay when jobs are inserted: NOTIFY is delivered at commit, so a job enqueued
        -- in a transaction that rolls back never wakes anybody. One notification per statement.
        CREATE FUNCTION jobs_notify_relay() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('skyport_jobs', '');
            RETURN NULL;
        END;
        $$;
        CREATE TRIGGER jobs_notify_relay AFTER INSERT ON jobs
            FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify_relay();
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS job_attempts;
        DROP TABLE IF EXISTS jobs;
        DROP TABLE IF EXISTS workers;
        DROP FUNCTION IF EXISTS jobs_notify_relay();
        """
    )
