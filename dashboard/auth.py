"""Dashboard users: from configuration (argon2 hashes), their roles, CSRF tokens.

`SKYPORT_DASHBOARD_USERS="ann:<argon2 hash>:admin,bob:<argon2 hash>:readonly"`; hashes come from
`skyport dashboard hash-password`. Sessions are dashboard/sessions.py's, the login limiter
dashboard/limiter.py's, the login itself dashboard/login.py's.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from starlette.requests import Request

from config import ConfigError

ADMIN = "admin"
READONLY = "readonly"
ROLES = (ADMIN, READONLY)

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
    except (VerificationError, InvalidHashError, UnicodeEncodeError):
        return False


_DUMMY_HASH = _hasher.hash(secrets.token_hex(8))


def csrf_token(request: Request) -> str:
    """The session's CSRF token (created on first use)."""
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    """Whether `submitted` is the session's CSRF token (any value: a non-ASCII one is just wrong)."""
    expected = request.session.get("csrf")
    if not (isinstance(expected, str) and expected and isinstance(submitted, str) and submitted):
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "surrogatepass"))


def client_address(request: Request) -> str:
    """The client's address (after dashboard/proxies.py believed a trusted proxy's X-Forwarded-For)."""
    return request.client.host if request.client and request.client.host else "unknown"
