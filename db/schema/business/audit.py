"""audit_log (partitioned by month on created_at): who changed which row, from what to what."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata
from db.schema.business.columns import NOW, check_in

audit_log = sa.Table(
    "audit_log",
    metadata,
    # The primary key includes the partition key (a PK on a partitioned table must).
    sa.Column("audit_id", sa.BigInteger, primary_key=True, autoincrement=True),
    sa.Column("table_name", sa.String(100), nullable=False),
    sa.Column("record_id", sa.String(100), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),
    sa.Column("user_id", sa.Uuid, sa.ForeignKey("users.user_id", name="audit_log_user_id_fkey")),
    sa.Column("performed_by", sa.String(100)),
    sa.Column("ip_address", pg.INET),
    sa.Column("old_values", pg.JSONB),
    sa.Column("new_values", pg.JSONB),
    sa.Column("changed_fields", pg.ARRAY(sa.Text)),
    sa.Column("reason", sa.Text),
    sa.Column("created_at", sa.DateTime(), primary_key=True, server_default=NOW),
    sa.CheckConstraint(check_in("action", ("INSERT", "UPDATE", "DELETE")), name="audit_log_action_check"),
    postgresql_partition_by="RANGE (created_at)",
)
sa.Index("idx_audit_table_record", audit_log.c.table_name, audit_log.c.record_id)
sa.Index("idx_audit_user", audit_log.c.user_id, postgresql_where=sa.text("user_id IS NOT NULL"))
sa.Index("idx_audit_created", audit_log.c.created_at.desc())
# People's actions (the console's `ops:<user>`, the command line's `cli:<login>`), newest first (0012).
sa.Index(
    "audit_log_people_idx",
    audit_log.c.created_at.desc(),
    audit_log.c.audit_id.desc(),
    postgresql_where=sa.text("performed_by LIKE 'ops:%' OR performed_by LIKE 'cli:%'"),
)
