"""The ASGI application of the web process (`skyport web`)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import config
from dashboard import api, auth, flow, metrics, pages, proxies, sessions, web, webhooks
from dashboard.health import healthz, readyz
from dashboard.validate import BadInput


def routes() -> list[Route | Mount]:
    return [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics.metrics),
        # Payment-gateway callbacks (signed; outside the login, see dashboard/webhooks.py).
        Route("/webhooks/payments/{provider}", webhooks.payment_webhook, methods=["POST"]),
        Mount("/static", StaticFiles(directory=web.HERE / "static"), name="static"),
        # The dashboard (login required; POSTs need the CSRF token and the admin role).
        Route("/login", pages.login, methods=["GET", "POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/", pages.overview),
        Route("/jobs", pages.jobs),
        Route("/jobs/bulk", pages.jobs_bulk, methods=["POST"]),
        Route("/jobs/{job_id}", pages.job),
        Route("/jobs/{job_id}/{verb}", pages.job_action, methods=["POST"]),
        Route("/failures", pages.failures_page),
        Route("/failures/retry", pages.failures_retry, methods=["POST"]),
        Route("/periodic", pages.periodic),
        Route("/periodic/{name:str}/{verb:str}", pages.periodic_action, methods=["POST"]),
        Route("/queues", pages.domain_queues),
        Route("/queues/{verb:str}", pages.domain_action, methods=["POST"]),
        # Flow control: pause, resume, limit a queue or an actor (dashboard/flow.py).
        Route("/queues/{name:str}/{verb:str}", flow.page_queue, methods=["POST"]),
        Route("/actors/{name:str}/{verb:str}", flow.page_actor, methods=["POST"]),
        Route("/audit", pages.audit),
        Route("/sessions", pages.sessions_page),
        Route("/sessions/sign-out-everywhere", pages.sign_out_everywhere, methods=["POST"]),
        # The JSON API (docs/api.md "Console JSON API").
        Route("/api/openapi.json", api.openapi_document),
        Route("/api/login", api.login, methods=["POST"]),
        Route("/api/logout", api.logout, methods=["POST"]),
        Route("/api/me", api.me),
        Route("/api/overview", api.overview),
        Route("/api/jobs", api.jobs),
        Route("/api/jobs/{job_id}", api.job),
        Route("/api/jobs/{job_id}/{verb}", api.job_action, methods=["POST"]),
        Route("/api/jobs/{verb}", api.jobs_bulk, methods=["POST"]),
        Route("/api/failures", api.failures_list),
        Route("/api/failures/retry", api.failures_retry, methods=["POST"]),
        Route("/api/periodic", api.periodic),
        Route("/api/periodic/{name:str}/{verb:str}", api.periodic_action, methods=["POST"]),
        Route("/api/queues", api.domain_queues),
        Route("/api/queues/{verb:str}", api.domain_action, methods=["POST"]),
        Route("/api/flow", flow.api_table),
        Route("/api/queues/{name:str}/{verb:str}", flow.api_queue, methods=["POST"]),
        Route("/api/actors/{name:str}/{verb:str}", flow.api_actor, methods=["POST"]),
        Route("/api/audit", api.audit),
        Route("/api/sessions", api.sessions_list),
        Route("/api/sessions/sign-out-everywhere", api.sign_out_everywhere, methods=["POST"]),
    ]


def create_app() -> Starlette:
    cfg = config.get()
    app = Starlette(
        routes=routes(),
        middleware=[
            # Outermost: the client address and scheme, from trusted proxies only (SKYPORT_TRUSTED_PROXIES).
            Middleware(proxies.ForwardedHeaders, trusted=cfg.web.trusted_proxies),
            Middleware(
                web.DashboardGate,
                secret_key=web.secret_key(cfg),
                secure=cfg.web.secure_cookies,
                max_age_s=sessions.DEFAULT_SESSION_MAX_AGE_S,
            ),
        ],
        exception_handlers={
            HTTPException: web.http_error,
            BadInput: web.bad_input,
            web.Repeated: web.repeated,
        },
    )
    web.env.globals["console_links"] = cfg.web.console_links
    app.state.users = auth.parse_users(cfg.web.dashboard_users)
    if not app.state.users:
        web.logger.warning(
            "SKYPORT_DASHBOARD_USERS is empty: nobody can log in to the dashboard "
            "(hashes from `skyport dashboard hash-password`)"
        )
    app.state.session_max_age_s = sessions.DEFAULT_SESSION_MAX_AGE_S
    app.state.requests_seen = web.RequestsSeen()
    return app


app = create_app()
