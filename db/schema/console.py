"""The ops console's security state (db/migrations/versions/0010_console_security.py): server-side
sessions, and the failed logins the limiter counts. Both are shared by every web process."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql as pg

from db.schema.base import metadata

NOW = sa.text("now()")

# One row per logged-in session; the cookie carries the token, the row its SHA-256 (hex). Deleting
# the row ends the session in every process and every copy of the cookie.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("token_hash", sa.Text, primary_key=True),
    sa.Column("user_name", sa.Text, nullable=False),
    # A digest of the user's password hash at login: a changed hash ends the session.
    sa.Column("password_digest", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ip_address", pg.INET),
    sa.Column("user_agent", sa.Text),
)
sa.Index("console_sessions_user_name_idx", console_sessions.c.user_name)
sa.Index("console_sessions_expires_at_idx", console_sessions.c.expires_at)

# One row per failed login (written before the password is checked, deleted when it was right).
# The limiter counts them per account (until that account logs in: `account_cleared`) and per
# client address (only time forgets those).
console_login_failures = sa.Table(
    "console_login_failures",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(always=True), primary_key=True),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("address", sa.Text, nullable=False),
    sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False, server_default=NOW),
    sa.Column("account_cleared", sa.Boolean, nullable=False, server_default=sa.text("false")),
)
sa.Index(
    "console_login_failures_account_idx",
    console_login_failures.c.account,
    console_login_failures.c.attempted_at,
    postgresql_where=sa.text("NOT account_cleared"),
)
sa.Index(
    "console_login_failures_address_idx",
    console_login_failures.c.address,
    console_login_failures.c.attempted_at,
)
sa.Index("console_login_failures_attempted_at_idx", console_login_failures.c.attempted_at)
