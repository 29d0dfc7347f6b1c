"""The ops console's security state, shared by every web process.

- `console_sessions`: server-side sessions. The cookie carries a random token; the row keeps its
  SHA-256, the user, a digest of the user's password hash at login, and the expiry. Logout, a
  changed password hash and an admin's "sign out everywhere" delete rows: every copy of the
  cookie stops working at once, in every process.
- `console_login_failures`: one row per failed login (account and client address), which the
  login limiter counts per account and per address with exponential back-off.

Revision ID: 0010_console_security
Revises: 0009_ledger_hot_path
"""

from alembic import op

revision = "0010_console_security"
down_revision = "0009_ledger_hot_path"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE console_sessions (
            token_hash      text PRIMARY KEY,   -- SHA-256 (hex) of the cookie's token
            user_name       text NOT NULL,
            password_digest text NOT NULL,      -- digest of the user's password hash at login
            created_at      timestamptz NOT NULL DEFAULT now(),
            last_seen_at    timestamptz NOT NULL DEFAULT now(),
            expires_at      timestamptz NOT NULL,
            ip_address      inet,
            user_agent      text
        );
        -- "Sign out everywhere" for one user; the sessions page.
        CREATE INDEX console_sessions_user_name_idx ON console_sessions (user_name);
        -- Expired sessions are deleted at each login.
        CREATE INDEX console_sessions_expires_at_idx ON console_sessions (expires_at);

        CREATE TABLE console_login_failures (
            id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            account         text NOT NULL,
            address         text NOT NULL,
            attempted_at    timestamptz NOT NULL DEFAULT now(),
            account_cleared boolean NOT NULL DEFAULT false  -- the account logged in since
        );
        -- Recent failures of one account (not yet cleared by its own login).
        CREATE INDEX console_login_failures_account_idx ON console_login_failures (account, attempted_at)
            WHERE NOT account_cleared;
        -- Recent failures from one client address.
        CREATE INDEX console_login_failures_address_idx ON console_login_failures (address, attempted_at);
        -- Old failures are deleted.
        CREATE INDEX console_login_failures_attempted_at_idx ON console_login_failures (attempted_at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE IF EXISTS console_login_failures;
        DROP TABLE IF EXISTS console_sessions;
        """
    )
