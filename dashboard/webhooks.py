"""`POST /webhooks/payments/{provider}`: gateway callbacks in, stored and enqueued, nothing else.

The provider's adapter (PAYMENT_PROVIDER_<PROVIDER>: stripe, paystack or standard, the default;
jobs/payments/providers/) verifies its gateway's signature and reads its gateway's events.
401 missing/wrong signature or a timestamp outside the tolerance (replay); 400 a body that is not
UTF-8 JSON of bounded depth or does not match the gateway's contract (the JSON error names the
field); 413 a body above the limit; 404 a provider without a secret; 503 (Retry-After) the database
is away; 200 accepted, 200 ignored for an event type that moves no money here (stored, no job), and
200 duplicate for an event received before (which changes nothing).
Outside the dashboard login: the signature is the authentication.

Concurrent deliveries share one transaction (dashboard/batches.py); when a batch's transaction
fails, each of its deliveries is stored again on its own, so that only a delivery at fault fails.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import psycopg
from starlette.requests import Request
from starlette.responses import JSONResponse

import config
from dashboard.batches import DEFAULT_WRITERS, LoopBatcher
from db import pool
from jobs.payments.body import EventError, decode_body
from jobs.payments.events import SignatureError
from jobs.payments.inbox import Delivery, Received, receive_many
from jobs.payments.providers import ADAPTERS, Ignored, Parsed
from jobs.payments.providers.base import gateway_type
from workers import EnqueueError

logger = logging.getLogger("skyport.webhooks")

# Seconds a gateway is asked to wait (Retry-After) when the database is away.
RETRY_AFTER_S = 5
# Seconds to wait for a connection to store a batch, and its deliveries one by one if it failed:
# a gateway times out long before a 30 s wait would answer it 503.
STORE_CONNECT_TIMEOUT_S = 5.0
# Provider names (the path's last segment); others are unknown (404).
_PROVIDER = re.compile(r"[A-Za-z0-9_.-]{1,50}", re.ASCII)


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


# Threads of the intake's batches (shared by the event loops of this process; one, but for tests).
_executor: ThreadPoolExecutor | None = None
_batchers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopBatcher[Delivery, Received]] = (
    weakref.WeakKeyDictionary()
)


def store_deliveries(deliveries: list[Delivery]) -> list[Received | BaseException]:
    """A batch of accepted deliveries in one transaction. When that fails (a body the database
    refuses, a deadlock, a connection lost), each delivery is stored again in a transaction of its
    own, so that only the deliveries at fault get an error; their results, or exceptions, in order.
    Raises (every delivery gets the error) only when no connection is to be had."""
    stored = _store_batch(deliveries)
    if stored is not None:
        return stored
    with pool.connection(STORE_CONNECT_TIMEOUT_S) as conn:
        return [_store_alone(conn, delivery) for delivery in deliveries]


def _store_batch(deliveries: list[Delivery]) -> list[Received | BaseException] | None:
    """The batch's results, or None when its transaction failed (and rolled back)."""
    with pool.connection(STORE_CONNECT_TIMEOUT_S) as conn:  # raising here: no database
        try:
            return list(receive_many(conn, deliveries))
        except Exception as exc:
            if len(deliveries) == 1:
                raise
            logger.warning(
                "payment intake: a batch of %d deliveries failed (%s); storing each on its own",
                len(deliveries),
                _first_line(exc),
            )
            return None


def _store_alone(conn: psycopg.Connection, delivery: Delivery) -> Received | BaseException:
    try:
        return receive_many(conn, [delivery])[0]
    except Exception as exc:
        return exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


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


def _store_error(provider: str, event: Parsed, exc: BaseException) -> JSONResponse:
    """The answer to a delivery that could not be stored: 400 when its body is at fault (data the
    database refuses, which the intake's checks should have refused first), 503 with Retry-After
    when the database is away or the delivery's transaction failed on its own, else 500 (logged;
    the gateway's retry is safe)."""
    if isinstance(exc, psycopg.DataError | UnicodeError | EnqueueError):
        return _error(400, "invalid event", field="body", detail=_first_line(exc))
    if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
        logger.warning("payment intake: %s/%s not stored: %s", provider, event.id, _first_line(exc))
        return JSONResponse(
            {
                "error": "database unavailable",
                "detail": "send it again later (a stored one answers duplicate)",
            },
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    logger.error("payment intake: %s/%s not stored", provider, event.id, exc_info=exc)
    return _error(500, "internal error", detail="not stored; send it again later")


async def payment_webhook(request: Request) -> JSONResponse:
    provider = request.path_params["provider"]
    cfg = config.get()
    secrets = cfg.payments.secrets_for(provider) if _PROVIDER.fullmatch(provider) else []
    if not secrets:
        return _error(
            404,
            "unknown payment provider",
            detail=f"no secret for {provider[:60]!a} (names: 1 to 50 of A-Z a-z 0-9 _ . -)",
        )
    try:
        body = await _read_body(request, cfg.payments.max_body_bytes)
    except _TooLarge:
        limit = cfg.payments.max_body_bytes
        return _error(413, "body too large", field="body", detail=f"larger than {limit} bytes")
    adapter = ADAPTERS[cfg.payments.adapter_for(provider)]
    try:
        adapter.verify(request.headers, body, secrets, cfg.payments.tolerance_s, time.time())
    except SignatureError as exc:
        return _error(401, "invalid signature", detail=str(exc))
    try:
        doc = decode_body(body)
        event = adapter.parse(doc)
    except EventError as exc:
        return _error(400, "invalid event", field=exc.field, detail=exc.message)
    try:
        standard = adapter.name == "standard"  # its body is the internal event: stored once
        received = await _intake().submit((provider, event, body, gateway_type(doc) or event.type, standard))
    except Exception as exc:
        return _store_error(provider, event, exc)
    if received.duplicate:
        return JSONResponse({"status": "duplicate", "id": event.id})
    return JSONResponse({"status": "ignored" if isinstance(event, Ignored) else "accepted", "id": event.id})
