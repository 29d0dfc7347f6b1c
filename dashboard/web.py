"""What every dashboard request shares: templates, the login gate, CSRF and role checks,
running ledger calls off the event loop, JSON encoding."""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import config
from dashboard import auth, domain_views, formats, sessions, validate
from dashboard.validate import BadInput, Schema
from db import pool
from jobs import listing

logger = logging.getLogger("skyport.dashboard")
HERE = Path(__file__).resolve().parent
# Paths of machine clients (probes, Prometheus, payment gateways): no session, no login, no page headers.
MACHINE_PREFIXES = ("/healthz", "/readyz", "/metrics", "/webhooks/")
# Paths reachable without a login (the machine paths, the login itself, static files).
PUBLIC_PREFIXES = (*MACHINE_PREFIXES, "/login", "/api/login", "/static/")
# The session cookie's name; over HTTPS only (secure cookies) with the __Host- prefix: the browser
# keeps it for this host and path / only, and never sends it over plain HTTP.
SESSION_COOKIE = "skyport_session"
SECURE_SESSION_COOKIE = "__Host-skyport_session"
# Request ids of state changes remembered per web process (double-click protection).
DEFAULT_REQUESTS_REMEMBERED = 10_000
# Headers on every dashboard page: no framing, no script or style from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

# How often the pages' live regions are refreshed (dashboard/static/dashboard.js).
DEFAULT_LIVE_EVERY_MS = 3000

T = TypeVar("T")

env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))


env.filters["when"] = formats.when
env.filters["ago"] = formats.ago
env.filters["age"] = formats.duration
env.filters["duration"] = formats.duration
env.filters["tags"] = formats.tags
env.filters["yesno"] = formats.yes_no
env.filters["key"] = formats.long_key
env.filters["plain"] = formats.plain
env.globals["domain_view"] = domain_views.view
env.globals["domain_cell"] = domain_views.cell
env.globals["domain_css"] = domain_views.css
env.filters["pretty"] = lambda v: json.dumps(v, indent=2, default=str, ensure_ascii=False)
env.filters["urlq"] = lambda v: quote(str(v), safe="")
env.globals["request_id"] = lambda: secrets.token_urlsafe(12)  # one per rendered form


def secret_key(cfg: config.Config) -> str:
    if cfg.web.secret_key:
        return cfg.web.secret_key
    logger.warning("SKYPORT_SECRET_KEY is not set: sessions are signed with a random key (lost on restart)")
    return secrets.token_urlsafe(32)


class ApiResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        # backslashreplace: a lone surrogate (a JSON body can carry one) comes out as its \\uXXXX escape.
        text = json.dumps(content, default=listing.json_default, ensure_ascii=False)
        return text.encode("utf-8", "backslashreplace")


def is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


class DashboardGate:
    """The session and the login, for the dashboard only (a pure ASGI middleware: no task, stream
    or Request per machine request). Probes, metrics and webhooks (MACHINE_PREFIXES) go straight to
    the app, without a session cookie or security headers. Every other path gets the signed session
    cookie and, when it names a live server-side session (dashboard/sessions.py), its user; pages
    and API calls outside PUBLIC_PREFIXES need one (pages redirect to /login, the API answers 401).
    Responses carry SECURITY_HEADERS."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secret_key: str,
        secure: bool = False,
        max_age_s: int = sessions.DEFAULT_SESSION_MAX_AGE_S,
    ) -> None:
        self.app = app
        self.dashboard = SessionMiddleware(
            self._login_gate,
            secret_key=secret_key,
            session_cookie=SECURE_SESSION_COOKIE if secure else SESSION_COOKIE,
            max_age=max_age_s,
            same_site="lax",
            https_only=secure,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(MACHINE_PREFIXES):
            await self.app(scope, receive, send)
        else:
            await self.dashboard(scope, receive, send)

    async def _login_gate(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        request = Request(scope)
        user = None if path.startswith("/static/") else await current_user(request)
        if user is not None:
            request.state.user = user  # kept in the scope: the endpoint's Request sees it
        elif path == "/" or not path.startswith(PUBLIC_PREFIXES):
            await _login_required(request)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def current_user(request: Request) -> auth.User | None:
    """The user of the cookie's server-side session; a session ended elsewhere (logout, sign out
    everywhere, a new password hash) or expired also empties the cookie."""
    token = request.session.get("sid")
    if not isinstance(token, str):
        return None
    user = await db(sessions.lookup, token, request.app.state.users)
    if user is None:
        request.session.clear()
    return user


def _login_required(request: Request) -> Response:
    if is_api(request):
        return ApiResponse({"error": "login required (POST /api/login)"}, status_code=401)
    path, query = request.url.path, request.url.query
    target = quote(path + (f"?{query}" if query else ""), safe="")
    return RedirectResponse(f"/login?next={target}", status_code=303)


async def db(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run `fn(conn, *args)` on a pooled connection in a worker thread."""

    def call() -> T:
        with pool.connection() as conn:
            return fn(conn, *args, **kwargs)

    return await run_in_threadpool(call)


async def change_request(
    request: Request, schema: Schema, *, required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The checked body of a state-changing request, after the CSRF and role checks (403 otherwise).
    Forms carry `csrf_token`; API calls send JSON and the `X-CSRF-Token` header. A request id seen
    before (`request_id` in forms, the `Idempotency-Key` header) raises Repeated."""
    if is_api(request):
        _may_act(request, request.headers.get("x-csrf-token"))
        body = await validate.json_body(request, schema, required=required)
        key = IDEMPOTENCY_KEY.parse("Idempotency-Key", request.headers.get("idempotency-key") or "") or None
    else:
        form = await validate.raw_form(request)
        _may_act(request, form.get("csrf_token"))
        body = validate.fields(form.multi_items(), schema, required=required)
        key = body.get("request_id")
    if key and not request.app.state.requests_seen.first_time(f"{request.state.user.name}:{key}"):
        raise Repeated()
    return body


IDEMPOTENCY_KEY = validate.Text(200)


def _may_act(request: Request, csrf: object) -> None:
    if not auth.csrf_ok(request, csrf):
        raise HTTPException(403, "missing or wrong CSRF token (reload the page)")
    if not request.state.user.can_act:
        raise HTTPException(403, f"user {request.state.user.name} is read-only")


class Repeated(Exception):
    """The same form (its `request_id`) or API call (`Idempotency-Key`) came again: a double click."""


class RequestsSeen:
    """Request ids of recent state changes (per web process): a repeated submission does nothing.
    The ledger's state-guarded writes make retry/cancel/delete idempotent anyway; this covers
    "run now" and "refresh now", whose second click would enqueue a second job."""

    def __init__(self, size: int = DEFAULT_REQUESTS_REMEMBERED) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True


async def repeated(request: Request, exc: Exception) -> Response:
    message = "already done (the same request came twice): nothing more changed"
    if is_api(request):
        return ApiResponse({"message": message, "changed": [], "skipped": []}, status_code=409)
    back = safe_next(request.headers.get("referer", "").split(str(request.base_url).rstrip("/"), 1)[-1], "/")
    return redirect_with(request, back, message)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = env.get_template(template).render(
        request=request,
        user=getattr(request.state, "user", None),
        csrf=auth.csrf_token(request),
        # A live region's poll (dashboard.js) leaves the message to the page the user loads.
        flash=None if request.headers.get("x-skyport-live") else request.session.pop("flash", None),
        live_every_ms=DEFAULT_LIVE_EVERY_MS,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def redirect_with(request: Request, url: str, message: str) -> RedirectResponse:
    request.session["flash"] = message
    return RedirectResponse(url, status_code=303)


def safe_next(url: str | None, default: str = "/") -> str:
    """Only local paths: a login link must not send the user elsewhere."""
    ok = url and url.startswith("/") and not url.startswith("//") and "\\" not in url
    return url if ok else default


async def bad_input(request: Request, exc: Exception) -> Response:
    """400 (413) naming the refused field: JSON for the API, a page for the pages."""
    assert isinstance(exc, BadInput)
    if is_api(request) or "session" not in request.scope:
        return ApiResponse(exc.as_dict(), status_code=exc.status)
    return render(
        request, "error.html", status_code=exc.status, status=exc.status, detail=exc.detail, field=exc.field
    )


async def http_error(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    detail = getattr(exc, "detail", "error")
    if is_api(request) or "session" not in request.scope:  # machine paths have no session
        return ApiResponse({"error": detail}, status_code=status)
    return render(request, "error.html", status_code=status, status=status, detail=detail)
