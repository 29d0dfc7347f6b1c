"""The audit log: one naming for people, and their actions apart from the system's.

People are `ops:<user>` (the console) and `cli:<login>` (the command line); the system's rows
(`job:<actor>`, the app's own) are everything else. The console's own rows named a user bare
(`ann`) and the families' `ops:ann`; the verbs were `retry` and `ops retry`. The rows written so
far are renamed to the one naming (found by idx_audit_table_record: only the console's tables).
`audit_log_people_idx` lists people's actions newest first without stepping over the system's
(a quote expiry writes one row per quote).

Revision ID: 0012_audit_people
Revises: 0011_schedule_last_run
"""

from alembic import op

revision = "0012_audit_people"
down_revision = "0011_schedule_last_run"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE audit_log SET performed_by = 'ops:' || performed_by
         WHERE table_name IN ('jobs', 'schedule', 'matview', 'console_sessions')
           AND performed_by NOT LIKE '%:%';
        UPDATE audit_log SET reason = 'retry'
         WHERE table_name = 'notification_queue' AND reason = 'ops retry';
        UPDATE audit_log SET reason = 'replay'
         WHERE table_name = 'payment_events' AND reason = 'ops replay';
        CREATE INDEX audit_log_people_idx ON audit_log (created_at DESC, audit_id DESC)
         WHERE performed_by LIKE 'ops:%' OR performed_by LIKE 'cli:%';
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX audit_log_people_idx;")
