"""`POST /webhooks/payments/{provider}`: gateway callbacks in, stored and enqueued, nothing else.

401 missing/wrong signature or a timestamp outside the tolerance (replay); 400 a body that is not
JSON or does not match the contract (the JSON error names the field); 413 a body above the limit;
404 a provider without a secret; 200 accepted, and 200 again for a duplicate (which changes nothing).
Outside the dashboard login: the signature is the authentication.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse

import config
from dashboard.batches import DEFAULT_WRITERS, LoopBatcher
from db import pool
from jobs.payments.events import (
    SIGNATURE_HEADER,
    EventError,
    PaymentEvent,
    SignatureError,
    parse_event,
    verify_signature,
)
from jobs.payments.inbox import Received, receive_many

logger = logging.getLogger("skyport.webhooks")


class _TooLarge(Exception):
    pass


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _error(status: int, error: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, **extra}, status_code=status)


Delivery = tuple[str, PaymentEvent, bytes]  # provider, event, raw body

# Threads of the intake's batches (shared by the event loops of this process; one, but for tests).
_executor: ThreadPoolExecutor | None = None
_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBatcher[Delivery, Received]] = (
    weakref.WeakKeyDictionary()
)


def store_deliveries(deliveries: list[Delivery]) -> list[Received | BaseException]:
    """A batch of accepted deliveries in one transaction; when one body is refused by the database
    (psycopg.DataError, e.g. a \\u0000 that jsonb refuses), each is stored on its own, so that only
    that request gets the error."""
    with pool.connection() as conn:
        try:
            return list(receive_many(conn, deliveries))
        except psycopg.DataError:
            if len(deliveries) == 1:
                raise
        results: list[Received | BaseException] = []
        for delivery in deliveries:
            try:
                results.append(receive_many(conn, [delivery])[0])
            except psycopg.DataError as exc:
                results.append(exc)
        return results


def _intake() -> LoopBatcher[Delivery, Received]:
    """This event loop's batcher of deliveries (dashboard/batches.py)."""
    global _executor
    loop = asyncio.get_running_loop()
    batcher = _batchers.get(loop)
    if batcher is None:
        if _executor is None:
            _executor = ThreadPoolExecutor(DEFAULT_WRITERS, thread_name_prefix="webhook-intake")
        batcher = _batchers[loop] = LoopBatcher(store_deliveries, _executor)
    return batcher


async def payment_webhook(request: Request) -> JSONResponse:
    provider = request.path_params["provider"]
    cfg = config.get()
    secret = cfg.payments.secret_for(provider) if len(provider) <= 50 else None
    if secret is None:
        return _error(404, f"unknown payment provider {provider!r}")
    try:
        body = await _read_body(request, cfg.payments.max_body_bytes)
    except _TooLarge:
        return _error(413, f"body larger than {cfg.payments.max_body_bytes} bytes")
    try:
        verify_signature(
            request.headers.get(SIGNATURE_HEADER), body, secret, cfg.payments.tolerance_s, time.time()
        )
    except SignatureError as exc:
        return _error(401, "invalid signature", detail=str(exc))
    try:
        event = parse_event(body)
    except EventError as exc:
        return _error(400, "invalid event", field=exc.field, detail=exc.message)
    try:
        received = await _intake().submit((provider, event, body))
    except psycopg.DataError as exc:  # e.g. a \u0000 in a string, which jsonb refuses
        return _error(400, "invalid event", field="body", detail=str(exc).splitlines()[0])
    if received.duplicate:
        return JSONResponse({"status": "duplicate", "id": event.id})
    return JSONResponse({"status": "accepted", "id": event.id})
