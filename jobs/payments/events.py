"""The internal payment event, and its JSON document: the body of a Standard Webhooks provider (and
of the deprecated `Skyport-Signature` contract), and what the gateway adapters make of their
gateways' events (stored in `payment_events.normalized`, read by processing).

    {"id", "type", "created", "data": {"transaction_id", "idempotency_key", "shipment_id", "amount",
     "currency", "payment_method", "failure_reason", "refund", "dispute"}}

`data.refund` ({"id", "amount"}: one refund; or {"amount_refunded"}: the payment's refunds so far)
and `data.dispute` ({"id", "amount"}) move money besides the payment itself. A refund or dispute
may leave out `shipment_id` (processing finds it through the payment) and the payment's `amount`.
Anything else is an EventError naming the field.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from db.states import EVENT_TYPES
from jobs.payments.body import EventError, decode_body, show

SIGNATURE_HEADER = "Skyport-Signature"
# Payment methods the payment_transactions.payment_method CHECK accepts.
PAYMENT_METHODS = ("credit_card", "bank_transfer", "mobile_money", "cash", "other")
# Largest amount numeric(12, 2) holds, and its places.
MAX_AMOUNT = Decimal("9999999999.99")
AMOUNT_PLACES = 2
# The latest `created`: 9999-12-31T23:59:59Z (well inside timestamptz's range).
MAX_CREATED = 253_402_300_799
MAX_FAILURE_REASON = 1000
# Types that move money besides the payment (their data names the movement).
REFUND_TYPES = ("payment.refunded",)
DISPUTE_TYPES = ("dispute.opened", "dispute.won", "dispute.lost")

# Full matches only (re.fullmatch: no `$` that lets a trailing newline through), ASCII digits only.
_AMOUNT = re.compile(rf"[0-9]{{1,10}}(?:\.[0-9]{{1,{AMOUNT_PLACES}}})?", re.ASCII)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}", re.ASCII)


class SignatureError(Exception):
    """The signature headers are missing, malformed, wrong, or too old / too far in the future."""


@dataclass(frozen=True)
class Movement:
    """Money moved on a payment besides the payment itself: a refund or a dispute (chargeback)."""

    kind: str  # "refund" or "dispute"
    id: str | None  # the refund's or dispute's id; None: `amount` is the payment's refunds so far
    amount: Decimal


@dataclass(frozen=True)
class PaymentEvent:
    id: str
    type: str
    created: int
    transaction_id: str
    idempotency_key: str
    shipment_id: uuid.UUID | None  # None: a refund or dispute naming only its payment
    amount: Decimal | None  # the payment's; normalized: AMOUNT_PLACES places; None: not said
    currency: str
    payment_method: str | None
    failure_reason: str | None
    movement: Movement | None = None


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<t>.<body>" (what gateways and the simulator send)."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secrets: list[str] | str, body: bytes, timestamp: int | None = None) -> str:
    """A complete header value, with one v1 per secret."""
    t = int(time.time()) if timestamp is None else timestamp
    keys = [secrets] if isinstance(secrets, str) else secrets
    return ",".join([f"t={t}", *(f"v1={sign(k, t, body)}" for k in keys)])


def verify_signature(
    header: str | None,
    body: bytes,
    secrets: str | Sequence[str],
    tolerance_s: float,
    now: float,
    name: str = SIGNATURE_HEADER,
) -> int:
    """Check a `t=..,v1=..` header (this contract's and Stripe's scheme, header `name`) against the
    body with any of the secrets; returns its timestamp or raises SignatureError."""
    if not header:
        raise SignatureError(f"missing {name} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        value = value.strip()
        if key == "t":
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError("malformed timestamp (unix seconds in ASCII digits)")
            timestamp = int(value)
        elif key == "v1" and _HEX_DIGEST.fullmatch(value.lower()):  # others can never match
            candidates.append(value.lower())
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {name} header (needs t= and v1=)")
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp outside the tolerance of {tolerance_s:.0f}s")
    keys = [secrets] if isinstance(secrets, str) else secrets
    # Compare every secret's digest against every candidate (no early exit), each in constant time.
    matched = False
    for expected in (sign(key, timestamp, body) for key in keys):
        for candidate in candidates:
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match")
    return timestamp


def parse_event(body: bytes) -> PaymentEvent:
    """The event in a raw body, or EventError naming the first bad field."""
    return parse_document(decode_body(body))


# ---- the document: the contract's fields ---------------------------------------------------------


def _string(data: dict[str, Any], field: str, prefix: str, *, max_len: int) -> str:
    """A required identifier: a non-empty printable string of at most max_len UTF-8 bytes (the
    event id ends up in its job's dedup key, which has a byte limit)."""
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise EventError(f"{prefix}{field}", "a non-empty string is required")
    if len(value) > max_len or len(value.encode("utf-8", "surrogatepass")) > max_len:
        raise EventError(f"{prefix}{field}", f"at most {max_len} bytes (UTF-8)")
    if not value.isprintable():
        raise EventError(f"{prefix}{field}", f"printable characters only, got {show(value)}")
    return value


def _amount(data: dict[str, Any], field: str = "amount", prefix: str = "data.") -> Decimal:
    raw = data.get(field)
    if isinstance(raw, int | Decimal) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not _AMOUNT.fullmatch(raw):
        raise EventError(
            f"{prefix}{field}",
            f"a positive decimal (ASCII digits, at most {AMOUNT_PLACES} places), got {show(raw)}",
        )
    amount = Decimal(raw).quantize(Decimal(1).scaleb(-AMOUNT_PLACES))
    if amount <= 0 or amount > MAX_AMOUNT:
        raise EventError(f"{prefix}{field}", f"must be > 0 and <= {MAX_AMOUNT}, got {raw}")
    return amount


def _header(doc: Any) -> tuple[str, str, int, dict[str, Any]]:
    """id, type, created and data of a document."""
    if not isinstance(doc, dict):
        raise EventError("body", "a JSON object is required")
    event_id = _string(doc, "id", "", max_len=255)
    event_type = doc.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise EventError("type", f"unknown event type {show(event_type)} (one of {', '.join(EVENT_TYPES)})")
    created = doc.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 < created <= MAX_CREATED:
        raise EventError("created", f"unix seconds (an integer from 1 to {MAX_CREATED}) are required")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventError("data", "an object is required")
    return event_id, event_type, created, data


def _movement(event_type: str, data: dict[str, Any]) -> Movement | None:
    """The refund or dispute of a document (None for the payment's own types)."""
    kind = "refund" if event_type in REFUND_TYPES else "dispute" if event_type in DISPUTE_TYPES else None
    if kind is None:
        return None
    part = data.get(kind)
    if part is None and kind == "refund":  # a full refund of the payment
        return Movement("refund", "full", _amount(data))
    if not isinstance(part, dict):
        raise EventError(f"data.{kind}", "an object is required")
    if kind == "refund" and "amount_refunded" in part:
        return Movement("refund", None, _amount(part, "amount_refunded", "data.refund."))
    movement_id = _string(part, "id", f"data.{kind}.", max_len=100)
    return Movement(kind, movement_id, _amount(part, "amount", f"data.{kind}."))


def _shipment(data: dict[str, Any], required: bool) -> uuid.UUID | None:
    raw = data.get("shipment_id")
    if raw is None and not required:
        return None
    if not isinstance(raw, str) or not _UUID.fullmatch(raw):
        raise EventError("data.shipment_id", f"a UUID (8-4-4-4-12 hex digits) is required, got {show(raw)}")
    return uuid.UUID(raw)


def parse_document(doc: Any) -> PaymentEvent:
    """The event in a decoded JSON document, or EventError naming the first bad field."""
    event_id, event_type, created, data = _header(doc)
    transaction_id = _string(data, "transaction_id", "data.", max_len=255)
    idempotency_key = _string(data, "idempotency_key", "data.", max_len=100)
    movement = _movement(event_type, data)
    shipment_id = _shipment(data, required=movement is None)
    amount = _amount(data) if movement is None or data.get("amount") is not None else None
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise EventError("data.currency", f"a 3-letter upper-case ISO code is required, got {show(currency)}")
    method = data.get("payment_method")
    if method is not None and (not isinstance(method, str) or method not in PAYMENT_METHODS):
        raise EventError(
            "data.payment_method", f"unknown method {show(method)} (one of {', '.join(PAYMENT_METHODS)})"
        )
    failure = data.get("failure_reason")
    if failure is not None and (not isinstance(failure, str) or len(failure) > MAX_FAILURE_REASON):
        raise EventError("data.failure_reason", f"a string (at most {MAX_FAILURE_REASON} characters) or null")
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
        movement=movement,
    )


def event_body(event: PaymentEvent) -> dict[str, Any]:
    """The JSON document of an event (what `payment_events.normalized` holds; the simulator's and
    tests' way to build bodies)."""
    data: dict[str, Any] = {
        "transaction_id": event.transaction_id,
        "idempotency_key": event.idempotency_key,
        "shipment_id": str(event.shipment_id) if event.shipment_id is not None else None,
        "amount": f"{event.amount:.2f}" if event.amount is not None else None,
        "currency": event.currency,
        "payment_method": event.payment_method,
        "failure_reason": event.failure_reason,
    }
    move = event.movement
    if move is not None:
        amount = f"{move.amount:.2f}"
        part = {"amount_refunded": amount} if move.id is None else {"id": move.id, "amount": amount}
        data[move.kind] = part
    return {"id": event.id, "type": event.type, "created": event.created, "data": data}
