"""Liveness and readiness: is the process up, and can it reach what it needs?"""

from __future__ import annotations

import asyncio

import psycopg
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse

import config
from db import migrate, pool

# Seconds each readiness probe may take.
PROBE_TIMEOUT_S = 2.0


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _check_postgres(cfg: config.Config) -> str | None:
    try:
        with pool.connect(cfg.database.url, connect_timeout=PROBE_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL unreachable: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r}"
    current, head = migrate.current_revision(cfg.database.url), migrate.head_revision()
    if current != head:
        return f"schema at {current or 'base'}, head is {head}: run `skyport db upgrade`"
    return None


def _check_broker(cfg: config.Config) -> str | None:
    if cfg.broker.kind == "rabbitmq":
        import pika

        try:
            params = pika.URLParameters(cfg.broker.url)
            params.socket_timeout = PROBE_TIMEOUT_S
            pika.BlockingConnection(params).close()
        except Exception as exc:
            return f"RabbitMQ unreachable: {exc!r}"
        return None
    try:
        client = redis.Redis.from_url(
            cfg.broker.url, socket_connect_timeout=PROBE_TIMEOUT_S, socket_timeout=PROBE_TIMEOUT_S
        )
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return f"Redis unreachable: {exc}"
    return None


async def readyz(request: Request) -> JSONResponse:
    cfg = config.get()
    pg, broker = await asyncio.gather(
        asyncio.to_thread(_check_postgres, cfg), asyncio.to_thread(_check_broker, cfg)
    )
    problems = [p for p in (pg, broker) if p]
    body = {"status": "ready" if not problems else "not ready", "problems": problems}
    return JSONResponse(body, status_code=200 if not problems else 503)
