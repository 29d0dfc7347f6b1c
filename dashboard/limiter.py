"""The login limiter: failed logins per account and per client address, in PostgreSQL (table
`console_login_failures`), so every web process counts the same failures.

- A login attempt is written as a failure *before* the password is checked (`begin`), and the row
  is deleted when the password was right (`succeeded`): parallel guesses cannot slip past the
  count while their passwords are being hashed. `begin` takes a transaction-scoped advisory lock
  per key, so two processes never both see "one attempt left".
- An account's failures are cleared by that account's own successful login, and by nothing else.
  An address's failures are forgotten only with time: another account logging in from the same
  address (an attacker's own account, say) changes nothing.
- Back-off: after `free` failures within FORGET_AFTER_S the key is blocked for BACKOFF_BASE_S after
  the latest failure, doubling with each further failure, at most BACKOFF_MAX_S. A blocked attempt
  is refused before its password is checked, and is not counted.
- Unknown user names are counted like known ones: the limiter tells nobody which names exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import psycopg

# Failures allowed per account before the back-off starts.
ACCOUNT_FREE_FAILURES = 5
# Failures allowed per client address (many people behind one NAT or proxy) before the back-off.
ADDRESS_FREE_FAILURES = 20
# The first block after the free failures, in seconds; each further failure doubles it.
BACKOFF_BASE_S = 15.0
# The longest block.
BACKOFF_MAX_S = 900.0
# Failures older than this are forgotten (and deleted).
FORGET_AFTER_S = 3600.0

# -- console_login_lock -- one key at a time (keys are taken in a fixed order: no deadlock).
LOGIN_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(%(key)s, 0))"
# -- console_login_failures_of_account -- recent failures not cleared by the account's own login.
FAILURES_OF_ACCOUNT = """
SELECT count(*), extract(epoch FROM clock_timestamp() - max(attempted_at))::float8
  FROM console_login_failures
 WHERE account = %(key)s AND NOT account_cleared
   AND attempted_at > now() - make_interval(secs => %(forget_s)s)
"""
# -- console_login_failures_of_address -- recent failures from one client address.
FAILURES_OF_ADDRESS = """
SELECT count(*), extract(epoch FROM clock_timestamp() - max(attempted_at))::float8
  FROM console_login_failures
 WHERE address = %(key)s AND attempted_at > now() - make_interval(secs => %(forget_s)s)
"""
# Times are the clock's, not the transaction's start (now()): an attempt that waited for the lock
# behind others must not see their failures as younger than itself.
FAILURE_INSERT = """
INSERT INTO console_login_failures (account, address, attempted_at) VALUES (%s, %s, clock_timestamp())
RETURNING id
"""
FAILURES_FORGET = (
    "DELETE FROM console_login_failures WHERE attempted_at < now() - make_interval(secs => %(forget_s)s)"
)
# -- console_login_succeeded -- the attempt was no failure; the account's failures are cleared.
ATTEMPT_DELETE = "DELETE FROM console_login_failures WHERE id = %s"
ACCOUNT_CLEAR = (
    "UPDATE console_login_failures SET account_cleared = true WHERE account = %s AND NOT account_cleared"
)


@dataclass(frozen=True)
class Attempt:
    """A login attempt being checked, counted as a failure until `succeeded`."""

    id: int
    account: str
    address: str


@dataclass(frozen=True)
class Blocked:
    """Too many failures: try again in `retry_after_s` seconds."""

    retry_after_s: int
    scope: str  # "account" or "address"

    @property
    def message(self) -> str:
        which = "for this account" if self.scope == "account" else "from this address"
        return f"too many failed logins {which}: try again in {_duration(self.retry_after_s)}"


def backoff_s(failures: int, free: int) -> float:
    """How long a key with `failures` recent failures is blocked after the latest one."""
    if failures < free:
        return 0.0
    return min(BACKOFF_BASE_S * 2.0 ** min(failures - free, 32), BACKOFF_MAX_S)


def begin(conn: psycopg.Connection, account: str, address: str) -> Attempt | Blocked:
    """Count an attempt for `account` from `address`, or refuse it while either is blocked."""
    keys = sorted({f"account:{account}", f"address:{address}"})
    checks = (
        ("account", FAILURES_OF_ACCOUNT, account, ACCOUNT_FREE_FAILURES),
        ("address", FAILURES_OF_ADDRESS, address, ADDRESS_FREE_FAILURES),
    )
    with conn.transaction():
        for key in keys:
            conn.execute(LOGIN_LOCK, {"key": key})
        for scope, query, key, free in checks:
            failures, age_s = conn.execute(query, {"key": key, "forget_s": FORGET_AFTER_S}).fetchone()
            wait_s = backoff_s(failures, free) - max(age_s or 0.0, 0.0)
            if failures and wait_s > 0:
                return Blocked(max(math.ceil(wait_s), 1), scope)
        conn.execute(FAILURES_FORGET, {"forget_s": FORGET_AFTER_S})
        attempt_id = conn.execute(FAILURE_INSERT, (account, address)).fetchone()[0]
    return Attempt(attempt_id, account, address)


def succeeded(conn: psycopg.Connection, attempt: Attempt) -> None:
    """The password was right: the attempt was no failure, and the account starts afresh."""
    with conn.transaction():
        conn.execute(ATTEMPT_DELETE, (attempt.id,))
        conn.execute(ACCOUNT_CLEAR, (attempt.account,))


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} s"
    return f"{math.ceil(seconds / 60)} min"
