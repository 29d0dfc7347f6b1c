"""The ASGI application of the web process (`skyport web`)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import config
from dashboard import api, auth, metrics, pages, web, webhooks
from dashboard.health import healthz, readyz


def create_app() -> Starlette:
    cfg = config.get()
    routes = [
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
        Route("/jobs/{job_id:int}", pages.job),
        Route("/jobs/{job_id:int}/{verb:str}", pages.job_action, methods=["POST"]),
        Route("/periodic", pages.periodic),
        Route("/periodic/{name:str}/{verb:str}", pages.periodic_action, methods=["POST"]),
        Route("/queues", pages.domain_queues),
        Route("/queues/{verb:str}", pages.domain_action, methods=["POST"]),
        Route("/audit", pages.audit),
        # The JSON API (README "Dashboard").
        Route("/api/login", api.login, methods=["POST"]),
        Route("/api/me", api.me),
        Route("/api/overview", api.overview),
        Route("/api/jobs", api.jobs),
        Route("/api/jobs/{job_id:int}", api.job),
        Route("/api/jobs/{job_id:int}/{verb:str}", api.job_action, methods=["POST"]),
        Route("/api/jobs/{verb:str}", api.jobs_bulk, methods=["POST"]),
        Route("/api/periodic", api.periodic),
        Route("/api/periodic/{name:str}/{verb:str}", api.periodic_action, methods=["POST"]),
        Route("/api/queues", api.domain_queues),
        Route("/api/queues/{verb:str}", api.domain_action, methods=["POST"]),
        Route("/api/audit", api.audit),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(web.DashboardGate, secret_key=web.secret_key(cfg))],
        exception_handlers={HTTPException: web.http_error, web.Repeated: web.repeated},
    )
    app.state.users = auth.parse_users(cfg.web.dashboard_users)
    if not app.state.users:
        web.logger.warning(
            "SKYPORT_DASHBOARD_USERS is empty: nobody can log in to the dashboard "
            "(hashes from `skyport dashboard hash-password`)"
        )
    app.state.login_limiter = auth.LoginLimiter()
    app.state.requests_seen = web.RequestsSeen()
    return app


app = create_app()
