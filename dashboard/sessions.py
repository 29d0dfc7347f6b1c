"""Server-side console sessions, in PostgreSQL (table `console_sessions`), shared by every web process.

The signed session cookie carries a random token (`sid`), the CSRF token and a flash message; the
row, found by the token's SHA-256, says who is logged in. A session is valid while its row exists,
has not expired, names a user that configuration still knows, and that user's password hash is the
one it logged in with (a digest of it is kept). So these end every copy of a session at once, in
every process:

- logout deletes the session's row (a copied cookie stops working);
- a new password hash in SKYPORT_DASHBOARD_USERS invalidates the user's sessions (each web process
  reads the hash at start: restart them after changing it);
- an admin's "sign out everywhere" deletes a user's rows, or everyone's (audited).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from typing import Any

import psycopg
from psycopg.rows import dict_row

from dashboard import actions, auth, queries

# Session lifetime in seconds (also the signed cookie's Max-Age).
DEFAULT_SESSION_MAX_AGE_S = 12 * 3600
# `last_seen_at` is written at most this often per session (not on every request).
TOUCH_EVERY_S = 60.0
# Characters of the User-Agent kept with a session (shown on the sessions page).
USER_AGENT_CHARS = 200

SESSION_INSERT = """
INSERT INTO console_sessions (token_hash, user_name, password_digest, expires_at, ip_address, user_agent)
VALUES (%(token_hash)s, %(user)s, %(digest)s, now() + make_interval(secs => %(max_age_s)s),
        %(ip)s::inet, %(user_agent)s)
"""
SESSIONS_EXPIRED_DELETE = "DELETE FROM console_sessions WHERE expires_at < now()"
# -- console_session_get -- a live session (its user checked against configuration by the caller).
SESSION_GET = """
SELECT user_name, password_digest, extract(epoch FROM now() - last_seen_at)::float8 AS idle_s
  FROM console_sessions
 WHERE token_hash = %s AND expires_at > now()
"""
SESSION_TOUCH = "UPDATE console_sessions SET last_seen_at = now() WHERE token_hash = %s"
SESSION_DELETE = "DELETE FROM console_sessions WHERE token_hash = %s"
SESSIONS_OF_USER_DELETE = "DELETE FROM console_sessions WHERE user_name = %s"
SESSIONS_ALL_DELETE = "DELETE FROM console_sessions"
SESSION_LIST = """
SELECT token_hash, user_name, created_at, last_seen_at, expires_at, host(ip_address) AS ip, user_agent
  FROM console_sessions
 WHERE expires_at > now()
 ORDER BY user_name, last_seen_at DESC
"""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def password_digest(user: auth.User) -> str:
    """A digest of the user's password hash: a session of an older hash is no session."""
    return hashlib.sha256(b"skyport-console-session\x00" + user.password_hash.encode()).hexdigest()


def _inet(address: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address(address)) if address else None
    except ValueError:  # the test client's "testclient", a unix socket
        return None


def create(
    conn: psycopg.Connection,
    user: auth.User,
    address: str | None,
    user_agent: str | None,
    *,
    replaces: str | None = None,
    max_age_s: float = DEFAULT_SESSION_MAX_AGE_S,
) -> str:
    """A new session for `user` (ending the one it `replaces`); returns its token, for the cookie."""
    token = secrets.token_urlsafe(32)
    agent = (user_agent or "")[:USER_AGENT_CHARS].replace("\x00", "") or None
    with conn.transaction():
        if replaces:
            conn.execute(SESSION_DELETE, (token_hash(replaces),))
        conn.execute(SESSIONS_EXPIRED_DELETE)
        conn.execute(
            SESSION_INSERT,
            {
                "token_hash": token_hash(token),
                "user": user.name,
                "digest": password_digest(user),
                "max_age_s": max_age_s,
                "ip": _inet(address),
                "user_agent": agent,
            },
        )
    return token


def lookup(conn: psycopg.Connection, token: str, users: dict[str, auth.User]) -> auth.User | None:
    """The user of a live session, else None (a session of a changed password hash is deleted)."""
    key = token_hash(token)
    row = conn.execute(SESSION_GET, (key,)).fetchone()
    if row is None:
        return None
    name, digest, idle_s = row
    user = users.get(name)
    if user is None or not hmac.compare_digest(digest, password_digest(user)):
        conn.execute(SESSION_DELETE, (key,))
        return None
    if idle_s >= TOUCH_EVERY_S:
        conn.execute(SESSION_TOUCH, (key,))
    return user


def end(conn: psycopg.Connection, token: str) -> None:
    conn.execute(SESSION_DELETE, (token_hash(token),))


def sign_out_everywhere(
    conn: psycopg.Connection, who: actions.Actor, user_name: str | None
) -> actions.ActionResult:
    """End every session of `user_name` (None: of every user), audited."""
    with conn.transaction():
        if user_name is None:
            ended = conn.execute(SESSIONS_ALL_DELETE).rowcount
        else:
            ended = conn.execute(SESSIONS_OF_USER_DELETE, (user_name,)).rowcount
        queries.audit_write(
            conn,
            user=who.by,
            ip=who.ip,
            verb="sign out everywhere",
            table_name="console_sessions",
            record_id=user_name or "*",
            details={"user": user_name or "every user", "sessions": ended},
            action="DELETE",
        )
    whose = f"of {user_name}" if user_name else "of every user"
    return actions.ActionResult(f"ended {ended} session(s) {whose}", [user_name or "*"])


def active(conn: psycopg.Connection, current_token: str | None) -> list[dict[str, Any]]:
    """Every live session (without its token hash); `current` marks the caller's own."""
    current = token_hash(current_token) if current_token else None
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(SESSION_LIST).fetchall()
    for row in rows:
        row["current"] = row.pop("token_hash") == current
    return rows
