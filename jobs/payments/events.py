"""The webhook contract: the signature header and the event body, checked before anything is stored.

    Skyport-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body bytes>")>[,v1=...]

Several `v1=` values may be present (secret rotation): any match is enough. The body is UTF-8 JSON
(no byte order mark, no other encoding) nested at most MAX_DEPTH levels, whose strings hold no NUL
and no lone surrogate (PostgreSQL's jsonb refuses both) and whose numbers are bounded:
{"id", "type", "created", "data": {"transaction_id", "idempotency_key", "shipment_id", "amount",
"currency", "payment_method", "failure_reason"}}. Anything else is an EventError naming the field.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import json
import re
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from db.states import EVENT_TYPES

SIGNATURE_HEADER = "Skyport-Signature"
# Payment methods the payment_transactions.payment_method CHECK accepts.
PAYMENT_METHODS = ("credit_card", "bank_transfer", "mobile_money", "cash", "other")
# Largest amount numeric(12, 2) holds, and its places.
MAX_AMOUNT = Decimal("9999999999.99")
AMOUNT_PLACES = 2
# The deepest nesting of objects and arrays a body may have (the contract itself needs 2).
MAX_DEPTH = 32
# The longest number literal, and the largest power of ten (either sign) of a number's magnitude
# (PostgreSQL's numeric, which jsonb stores numbers as, refuses exponents beyond 1000).
MAX_NUMBER_CHARS = 40
MAX_NUMBER_EXPONENT = 40
# The latest `created`: 9999-12-31T23:59:59Z (well inside timestamptz's range).
MAX_CREATED = 253_402_300_799
MAX_FAILURE_REASON = 1000

# Full matches only (re.fullmatch: no `$` that lets a trailing newline through), ASCII digits only.
_AMOUNT = re.compile(rf"[0-9]{{1,10}}(?:\.[0-9]{{1,{AMOUNT_PLACES}}})?", re.ASCII)
_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII)
_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}", re.ASCII)
# What the nesting scan looks at: string delimiters, escapes, brackets.
_STRUCTURE = re.compile(r'["\\\[\]{}]')
# What PostgreSQL's jsonb and text refuse in a string: NUL, and surrogates (only lone ones survive
# json.loads: a valid pair decodes to one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


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
    amount: Decimal  # normalized: AMOUNT_PLACES places
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
        value = value.strip()
        if key == "t":
            if not _TIMESTAMP.fullmatch(value):
                raise SignatureError("malformed timestamp (unix seconds in ASCII digits)")
            timestamp = int(value)
        elif key == "v1" and _HEX_DIGEST.fullmatch(value.lower()):  # others can never match
            candidates.append(value.lower())
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


# ---- the body: strict UTF-8 JSON that PostgreSQL's jsonb stores as it is -------------------------


@dataclass(frozen=True)
class _Unbounded:
    """A number out of bounds, kept by the parser until the walk names its field."""

    literal: str


def _show(value: Any, limit: int = 40) -> str:
    """A short, printable, ASCII rendering of a value for an error message."""
    text = ascii(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _utf8_text(body: bytes) -> str:
    if body.startswith(codecs.BOM_UTF8):
        raise EventError("body", "a byte order mark is not allowed: send UTF-8 JSON without one")
    if b"\x00" in body:
        raise EventError("body", "NUL bytes (UTF-16 or UTF-32?): the body must be UTF-8 JSON")
    try:
        return body.decode("utf-8")  # strict: json.loads(bytes) would guess UTF-16 or UTF-32 too
    except UnicodeDecodeError as exc:
        raise EventError(
            "body", f"not UTF-8 at byte {exc.start} ({exc.reason}): UTF-8 JSON is required"
        ) from None


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings do not count), in
    one pass without recursion; stops counting past `limit` (returns limit + 1)."""
    depth = deepest = 0
    in_string = False
    escaped = -1  # the position of the character a backslash escapes
    for match in _STRUCTURE.finditer(text):
        position, char = match.start(), match.group()
        if position == escaped:
            continue
        if in_string:
            if char == "\\":
                escaped = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _int(literal: str) -> int | _Unbounded:
    if len(literal) > MAX_NUMBER_CHARS or not literal.isascii():
        return _Unbounded(literal)
    return int(literal)


def _decimal(literal: str) -> Decimal | _Unbounded:
    if len(literal) > MAX_NUMBER_CHARS or not literal.isascii():
        return _Unbounded(literal)
    value = Decimal(literal)  # 125.50 as a JSON number stays exact
    if abs(value.adjusted()) > MAX_NUMBER_EXPONENT:  # 0e-1001 too: numeric refuses the exponent
        return _Unbounded(literal)
    return value


def _field(path: str, key: str) -> str:
    """The name of a member in errors: data.amount, or data["odd key"] (ASCII, escapes shown)."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key[:64])}]"


def _check_storable(value: Any, path: str) -> None:
    """Every string (keys too) storable by PostgreSQL, every number in bounds; EventError naming
    the field otherwise. Recursive, but the depth was checked first."""
    if isinstance(value, str):
        bad = _UNSTORABLE.search(value)
        if bad is not None:
            what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate"
            raise EventError(path or "body", f"{what} ({_show(bad.group())}) at character {bad.start()}")
    elif isinstance(value, _Unbounded):
        raise EventError(
            path or "body",
            f"{_show(value.literal)} is not a bounded JSON number (at most {MAX_NUMBER_CHARS} "
            f"characters, magnitude from 1e-{MAX_NUMBER_EXPONENT} to 1e{MAX_NUMBER_EXPONENT}, or 0)",
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            field = _field(path, key)
            _check_storable(key, field)
            _check_storable(item, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path or 'body'}[{index}]")


def _constant(literal: str) -> _Unbounded:
    return _Unbounded(literal)  # NaN, Infinity, -Infinity: not JSON (and not numeric in jsonb)


def decode_body(body: bytes) -> Any:
    """The JSON document of a raw body, or EventError: the body must be UTF-8 JSON nested at most
    MAX_DEPTH levels, with storable strings and bounded numbers."""
    text = _utf8_text(body)
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise EventError("body", f"nested more than {MAX_DEPTH} levels deep")
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_decimal, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise EventError("body", f"not JSON ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth was checked first
        raise EventError("body", f"nested more than {MAX_DEPTH} levels deep") from None
    _check_storable(doc, "")
    return doc


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
        raise EventError(f"{prefix}{field}", f"printable characters only, got {_show(value)}")
    return value


def _amount(data: dict[str, Any]) -> Decimal:
    raw = data.get("amount")
    if isinstance(raw, int | Decimal) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not _AMOUNT.fullmatch(raw):
        raise EventError(
            "data.amount",
            f"a positive decimal (ASCII digits, at most {AMOUNT_PLACES} places), got {_show(raw)}",
        )
    amount = Decimal(raw).quantize(Decimal(1).scaleb(-AMOUNT_PLACES))
    if amount <= 0 or amount > MAX_AMOUNT:
        raise EventError("data.amount", f"must be > 0 and <= {MAX_AMOUNT}, got {raw}")
    return amount


def _header(doc: Any) -> tuple[str, str, int, dict[str, Any]]:
    """id, type, created and data of a document."""
    if not isinstance(doc, dict):
        raise EventError("body", "a JSON object is required")
    event_id = _string(doc, "id", "", max_len=255)
    event_type = doc.get("type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise EventError("type", f"unknown event type {_show(event_type)} (one of {', '.join(EVENT_TYPES)})")
    created = doc.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 < created <= MAX_CREATED:
        raise EventError("created", f"unix seconds (an integer from 1 to {MAX_CREATED}) are required")
    data = doc.get("data")
    if not isinstance(data, dict):
        raise EventError("data", "an object is required")
    return event_id, event_type, created, data


def parse_document(doc: Any) -> PaymentEvent:
    """The event in a decoded JSON document, or EventError naming the first bad field."""
    event_id, event_type, created, data = _header(doc)
    transaction_id = _string(data, "transaction_id", "data.", max_len=255)
    idempotency_key = _string(data, "idempotency_key", "data.", max_len=100)
    raw_shipment = data.get("shipment_id")
    if not isinstance(raw_shipment, str) or not _UUID.fullmatch(raw_shipment):
        raise EventError(
            "data.shipment_id", f"a UUID (8-4-4-4-12 hex digits) is required, got {_show(raw_shipment)}"
        )
    amount = _amount(data)
    currency = data.get("currency")
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise EventError(
            "data.currency", f"a 3-letter upper-case ISO code is required, got {_show(currency)}"
        )
    method = data.get("payment_method")
    if method is not None and (not isinstance(method, str) or method not in PAYMENT_METHODS):
        raise EventError(
            "data.payment_method", f"unknown method {_show(method)} (one of {', '.join(PAYMENT_METHODS)})"
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
        shipment_id=uuid.UUID(raw_shipment),
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
