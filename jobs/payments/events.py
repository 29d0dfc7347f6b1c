"""The webhook contract: the signature header and the event body, checked before anything is stored.

    Skyport-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body bytes>")>[,v1=...]

Several `v1=` values may be present (secret rotation): any match is enough. The body is JSON:
{"id", "type", "created", "data": {"transaction_id", "idempotency_key", "shipment_id", "amount",
"currency", "payment_method", "failure_reason"}}.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from db.states import EVENT_TYPES

SIGNATURE_HEADER = "Skyport-Signature"
# Payment methods the payment_transactions.payment_method CHECK accepts.
PAYMENT_METHODS = ("credit_card", "bank_transfer", "mobile_money", "cash", "other")
# Largest amount numeric(12, 2) holds.
MAX_AMOUNT = Decimal("9999999999.99")

_AMOUNT = re.compile(r"^\d{1,10}(\.\d{1,2})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


class SignatureError(Exception):
    """The signature header is missing, malformed, wrong, or too old / too far in the future."""


class EventError(ValueError):
    """The body does not match the contract; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class PaymentEvent:
    id: str
    type: str
    created: int
    transaction_id: str
    idempotency_key: str
    shipment_id: uuid.UUID
    amount: Decimal
    currency: str
    payment_method: str | None
    failure_reason: str | None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<t>.<body>" (what gateways and the simulator send)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets: list[str] | str, body: bytes, timestamp: int | None = None) -> str:
    """A complete header value, with one v1 per secret."""
    t = int(time.time()) if timestamp is None else timestamp
    keys = [secrets] if isinstance(secrets, str) else secrets
    return ",".join([f"t={t}", *(f"v1={sign(k, t, body)}" for k in keys)])


def verify_signature(header: str | None, body: bytes, secret: str, tolerance_s: float, now: float) -> int:
    """Check the header against the body; returns its timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError("malformed timestamp") from None
        elif key == "v1" and value:
            candidates.append(value.strip().lower())
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header (needs t= and v1=)")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp outside the tolerance of {tolerance_s:.0f}s")
    expected = sign(secret, timestamp, body)
    # Compare against every candidate (no early exit), each in constant time.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match")
    return timestamp


def _string(data: dict[str, Any], field: str, prefix: str, *, max_len: int, required: bool = True) -> Any:
    value = data.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{prefix}{field}", "a non-empty string is required")
    if len(value) > max_len:
        raise EventError(f"{prefix}{field}", f"at most {max_len} characters")
    return value


def parse_event(body: bytes) -> PaymentEvent:
    """The event in a raw body, or EventError naming the first bad field."""
    try:
        doc = json.loads(body, parse_float=Decimal)  # 125.50 as a JSON number stays exact
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EventError("body", f"not JSON ({exc})") from None
    return parse_document(doc)


def parse_document(doc: Any) -> PaymentEvent:
    """The event in a decoded JSON document, or EventError naming the first bad field."""
    if not isinstance(doc, dict):
        raise EventError("body", "a JSON object is required")
    event_id = _string(doc, "id", "", max_len=255)
    event_type = doc.get("type")
    if event_type not in EVENT_TYPES:
        raise EventError("type", f"unknown event type {event_type!r} (one of {', '.join(EVENT_TYPES)})")
    created = doc.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or created <= 0:
        raise EventError("created", "unix seconds (a positive integer) are required")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventError("data", "an object is required")
    transaction_id = _string(data, "transaction_id", "data.", max_len=255)
    idempotency_key = _string(data, "idempotency_key", "data.", max_len=100)
    raw_shipment = _string(data, "shipment_id", "data.", max_len=64)
    try:
        shipment_id = uuid.UUID(raw_shipment)
    except ValueError:
        raise EventError("data.shipment_id", f"not a UUID: {raw_shipment!r}") from None
    amount_raw = data.get("amount")
    if isinstance(amount_raw, int | Decimal) and not isinstance(amount_raw, bool):
        amount_raw = str(amount_raw)
    if not isinstance(amount_raw, str) or not _AMOUNT.match(amount_raw):
        raise EventError(
            "data.amount", f"a positive decimal string with at most 2 places is required, got {amount_raw!r}"
        )
    try:
        amount = Decimal(amount_raw)
    except InvalidOperation:  # pragma: no cover - the pattern already refuses it
        raise EventError("data.amount", f"not a decimal: {amount_raw!r}") from None
    if amount <= 0 or amount > MAX_AMOUNT:
        raise EventError("data.amount", f"must be > 0 and <= {MAX_AMOUNT}, got {amount_raw}")
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.match(currency):
        raise EventError("data.currency", f"a 3-letter ISO code is required, got {currency!r}")
    method = data.get("payment_method")
    if method is not None and method not in PAYMENT_METHODS:
        raise EventError(
            "data.payment_method", f"unknown method {method!r} (one of {', '.join(PAYMENT_METHODS)})"
        )
    failure = data.get("failure_reason")
    if failure is not None and not isinstance(failure, str):
        raise EventError("data.failure_reason", "a string or null is required")
    return PaymentEvent(
        id=event_id,
        type=event_type,
        created=created,
        transaction_id=transaction_id,
        idempotency_key=idempotency_key,
        shipment_id=shipment_id,
        amount=amount,
        currency=currency,
        payment_method=method,
        failure_reason=failure,
    )


def event_body(event: PaymentEvent) -> dict[str, Any]:
    """The JSON document of an event (the simulator's and tests' way to build bodies)."""
    return {
        "id": event.id,
        "type": event.type,
        "created": event.created,
        "data": {
            "transaction_id": event.transaction_id,
            "idempotency_key": event.idempotency_key,
            "shipment_id": str(event.shipment_id),
            "amount": f"{event.amount:.2f}",
            "currency": event.currency,
            "payment_method": event.payment_method,
            "failure_reason": event.failure_reason,
        },
    }
