"""Merge the job families' migrations (built side by side on 0003) into one line again.

Revision ID: 0008_merge_job_families
Revises: 0004_notifications, 0005_maintenance, 0006_payments, 0007_dashboard
"""

revision = "0008_merge_job_families"
down_revision = ("0004_notifications", "0005_maintenance", "0006_payments", "0007_dashboard")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
