"""Dashboard logins: users from configuration (argon2 hashes), roles, CSRF tokens, a login rate limit.

`SKYPORT_DASHBOARD_USERS="ann:<argon2 hash>:admin,bob:<argon2 hash>:readonly"`; hashes come from
`skyport dashboard hash-password`. Sessions live in Starlette's signed, HttpOnly, SameSite cookie.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from config import ConfigError

ADMIN = "admin"
READONLY = "readonly"
ROLES = (ADMIN, READONLY)
# Failed logins allowed per client address within the window below.
DEFAULT_LOGIN_ATTEMPTS = 5
# Seconds over which failed logins are counted.
DEFAULT_LOGIN_WINDOW_S = 60.0

# An argon2 hash has no ':' but does have ',' (m=65536,t=3,p=4): entries end at ':<role>'.
_ENTRY = re.compile(r"\s*([A-Za-z0-9_.@-]+):(\$argon2[^:]+):(" + "|".join(ROLES) + r")\s*(?:,|$)")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    name: str
    password_hash: str
    role: str

    @property
    def can_act(self) -> bool:
        return self.role == ADMIN


def parse_users(text: str) -> dict[str, User]:
    """Parse SKYPORT_DASHBOARD_USERS; raises ConfigError naming the variable."""
    users: dict[str, User] = {}
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = _ENTRY.match(text, pos)
        if not match:
            raise ConfigError(
                "SKYPORT_DASHBOARD_USERS must be 'name:<argon2 hash>:admin|readonly,...' "
                f"(hashes from `skyport dashboard hash-password`); cannot read from: {text[pos : pos + 20]!r}"
            )
        name, password_hash, role = match.groups()
        users[name] = User(name, password_hash, role)
        pos = match.end()
    return users


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(user: User | None, password: str) -> bool:
    """Constant work whether or not the user exists."""
    try:
        if user is None:
            _hasher.verify(_DUMMY_HASH, password)
            return False
        return _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


class LoginLimiter:
    """Failed logins per client address in a sliding window (per web process)."""

    def __init__(self, attempts: int = DEFAULT_LOGIN_ATTEMPTS, window_s: float = DEFAULT_LOGIN_WINDOW_S):
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.setdefault(key, deque())
        while failures and failures[0] < now - self.window_s:
            failures.popleft()
        return failures

    def blocked_for_s(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may now."""
        now = time.monotonic()
        with self._lock:
            failures = self._recent(key, now)
            if len(failures) < self.attempts:
                return 0.0
            return max(failures[0] + self.window_s - now, 0.0)

    def failed(self, key: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(key, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: str | None) -> bool:
    expected = request.session.get("csrf")
    return bool(expected and submitted and hmac.compare_digest(expected, submitted))


def current_user(request: Request) -> User | None:
    """The logged-in user, if the session names one that configuration still knows."""
    name = request.session.get("user")
    users: dict[str, User] = request.app.state.users
    return users.get(name) if name else None


def client_key(request: Request) -> str:
    return request.client.host if request.client else "?"
