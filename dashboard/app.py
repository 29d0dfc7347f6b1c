"""The ASGI application of the web process (`skyport web`)."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route

from dashboard.health import healthz, readyz


def create_app() -> Starlette:
    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


app = create_app()
