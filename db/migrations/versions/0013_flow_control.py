"""Flow control: pauses, concurrency and rate limits, priorities (docs/architecture.md, "Flow control").

- `jobs.priority` (0 first, 9 last): which Redis list a job's message goes to.
- `jobs.flow_key`: the key an actor's `concurrency_key` computed from the arguments at enqueue.
- `jobs.waiting_for`: a queued job held back by flow control, off the broker: `paused` (its queue
  or actor is paused), `slot` (its concurrency limit is reached), `rate` (its start is reserved
  for `eta` by a rate limit). No attempt is spent; the relay publishes it when it may run.
- `jobs_publishable_idx` leaves out paused and slot-waiting rows (thousands of them must not slow
  the relay's claim); rate-waiting rows stay in it (due at their eta).
- `flow_controls`: one row per queue or actor that ops paused or limited (persisted, fleet-wide).
- `flow_rates`: the next start time each rate limit allows (GCRA), shared by every process.

Revision ID: 0013_flow_control
Revises: 0012_audit_people
"""

from alembic import op

revision = "0013_flow_control"
down_revision = "0012_audit_people"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE jobs
            ADD COLUMN priority smallint NOT NULL DEFAULT 0,
            ADD COLUMN flow_key text,
            ADD COLUMN waiting_for text,
            ADD CONSTRAINT jobs_priority_check CHECK (priority BETWEEN 0 AND 9),
            ADD CONSTRAINT jobs_waiting_for_check CHECK (waiting_for IN ('paused', 'slot', 'rate'));

        DROP INDEX jobs_publishable_idx;
        CREATE INDEX jobs_publishable_idx ON jobs (state, eta)
         WHERE published_at IS NULL AND state IN ('scheduled', 'queued', 'retrying')
           AND (waiting_for IS NULL OR waiting_for = 'rate');
        -- Held-back jobs, found again by what they wait for (resume, a freed slot).
        CREATE INDEX jobs_waiting_idx ON jobs (waiting_for, actor, queue, priority, id)
         WHERE waiting_for IS NOT NULL;
        -- Slots in use: running jobs of an actor (and key).
        CREATE INDEX jobs_running_actor_idx ON jobs (actor, flow_key) WHERE state = 'running';

        CREATE TABLE flow_controls (
            scope         text NOT NULL CHECK (scope IN ('queue', 'actor')),
            name          text NOT NULL,
            paused        boolean NOT NULL DEFAULT false,
            paused_reason text,
            paused_by     text,
            paused_at     timestamptz,
            concurrency   integer CHECK (concurrency >= 1),   -- NULL: no run-time limit
            changed_by    text NOT NULL,
            changed_at    timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (scope, name)
        );

        CREATE TABLE flow_rates (
            key     text PRIMARY KEY,                 -- 'actor:<name>[:<flow key>]', 'notify:sms', ...
            next_at timestamptz NOT NULL DEFAULT now() -- the earliest time the next start may happen
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE flow_rates;
        DROP TABLE flow_controls;
        DROP INDEX jobs_running_actor_idx;
        DROP INDEX jobs_waiting_idx;
        DROP INDEX jobs_publishable_idx;
        CREATE INDEX jobs_publishable_idx ON jobs (state, eta)
         WHERE published_at IS NULL AND state IN ('scheduled', 'queued', 'retrying');
        ALTER TABLE jobs DROP COLUMN waiting_for, DROP COLUMN flow_key, DROP COLUMN priority;
        """
    )
