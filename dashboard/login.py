"""Logging in and out, for the login page and `POST /api/login` alike: the limiter
(dashboard/limiter.py), the password (argon2, off the event loop), a new server-side session
(dashboard/sessions.py) whose token goes into the signed cookie."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dashboard import auth, limiter, sessions
from dashboard.web import db


class LoginRefused(Exception):
    """No login: `status` 401 (wrong user or password) or 429 (blocked, `retry_after_s`)."""

    def __init__(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)} if self.retry_after_s else {}


async def log_in(request: Request, name: str, password: str) -> auth.User:
    """Check the limiter and the password; start a session (ending the one the cookie had)."""
    address = auth.client_address(request)
    attempt = await db(limiter.begin, name, address)
    if isinstance(attempt, limiter.Blocked):
        raise LoginRefused(429, attempt.message, attempt.retry_after_s)
    user = request.app.state.users.get(name)
    if not await run_in_threadpool(auth.verify_password, user, password):
        raise LoginRefused(401, "wrong user or password")
    await db(limiter.succeeded, attempt)
    old = request.session.get("sid")
    token = await db(
        sessions.create,
        user,
        address,
        request.headers.get("user-agent"),
        replaces=old if isinstance(old, str) else None,
        max_age_s=request.app.state.session_max_age_s,
    )
    request.session.clear()
    request.session["sid"] = token
    request.state.user = user
    auth.csrf_token(request)
    return user


async def log_out(request: Request) -> None:
    """End the session: its row goes, so every copy of the cookie stops working."""
    token = request.session.get("sid")
    if isinstance(token, str):
        await db(sessions.end, token)
    request.session.clear()
