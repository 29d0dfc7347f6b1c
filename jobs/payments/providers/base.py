"""What a gateway adapter is, and the helpers adapters share (minor units, times, methods).

An adapter verifies its gateway's signature over the raw body and turns the gateway's event
document into the internal `PaymentEvent` (jobs/payments/events.py), or into `Ignored` for an event
type that moves no money here (stored, answered 200, never processed).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from jobs.payments.body import EventError, show
from jobs.payments.events import MAX_AMOUNT, MAX_CREATED, PaymentEvent

# Currencies without minor unit, and with three decimals, as Stripe lists them. Stripe asks
# three-decimal amounts to end in 0, so they fit the seed's two places. ISK has no minor unit in
# ISO 4217 but stays two-decimal in Stripe's API (an amount of 100 is 1 krona).
ZERO_DECIMAL = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA",
     "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)  # fmt: skip
THREE_DECIMAL = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])
# The most minor units that can fit numeric(12, 2) in any currency (fils of a three-decimal one).
_MAX_MINOR = int(MAX_AMOUNT.scaleb(3))


@dataclass(frozen=True)
class Ignored:
    """An event stored and acknowledged, but not processed (no money moves), with why."""

    id: str
    type: str
    created: int
    reason: str


Parsed = PaymentEvent | Ignored


class Adapter(Protocol):
    name: str

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], tolerance_s: float, now: float
    ) -> None:
        """Raise SignatureError unless one of the secrets signed this body."""

    def parse(self, doc: Any) -> Parsed:
        """The internal event of a decoded body, Ignored, or EventError naming the field."""


def gateway_type(doc: Any) -> str | None:
    """The gateway's own event type (`type` for Stripe and Standard Webhooks, `event` for Paystack)."""
    kind = doc.get("type", doc.get("event")) if isinstance(doc, dict) else None
    return kind[:100] if isinstance(kind, str) else None


def member(doc: Any, path: str) -> Any:
    """The value at a dotted path of nested objects (None when any step is missing)."""
    value = doc
    for step in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(step)
    return value


def text(doc: Any, path: str, *, max_len: int = 255, required: bool = True) -> str | None:
    value = member(doc, path)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise EventError(path, f"a non-empty printable string is required, got {show(value)}")
    if len(value.encode("utf-8", "surrogatepass")) > max_len:
        raise EventError(path, f"at most {max_len} bytes (UTF-8)")
    return value


def currency(doc: Any, path: str) -> str:
    value = member(doc, path)
    if not isinstance(value, str) or len(value) != 3 or not value.isascii() or not value.isalpha():
        raise EventError(path, f"a 3-letter ISO currency code is required, got {show(value)}")
    return value.upper()


def from_minor(
    doc: Any, path: str, code: str, *, allow_zero: bool = False, field: str | None = None
) -> Decimal:
    """An amount in the currency's minor unit (cents, kobo, yen, fils) as a decimal of two places
    (errors name `field`, the path by default)."""
    value = member(doc, path)
    path = field or path
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or (value == 0 and not allow_zero):
        raise EventError(path, f"a positive integer in the currency's minor unit, got {show(value)}")
    if value > _MAX_MINOR:  # checked first: 10**30 would overflow the decimal context's precision
        raise EventError(path, f"at most {MAX_AMOUNT} in the currency's unit, got {show(value)} minor units")
    if code in ZERO_DECIMAL:
        amount = Decimal(value)
    elif code in THREE_DECIMAL:
        if value % 10:
            raise EventError(path, f"{code} amounts (three decimals) must end in 0, got {value}")
        amount = Decimal(value).scaleb(-3)
    else:
        amount = Decimal(value).scaleb(-2)
    amount = amount.quantize(Decimal("0.01"))
    if amount > MAX_AMOUNT:
        raise EventError(path, f"at most {MAX_AMOUNT}, got {amount}")
    return amount


def unix_time(doc: Any, path: str) -> int:
    value = member(doc, path)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_CREATED:
        raise EventError(path, f"unix seconds (an integer from 1 to {MAX_CREATED}) are required")
    return value


def iso_time(doc: Any, *paths: str, default: int) -> int:
    """The first ISO 8601 time among the paths, as unix seconds (`default` when none is set)."""
    for path in paths:
        value = member(doc, path)
        if value is None:
            continue
        try:
            seconds = int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())
        except ValueError:
            raise EventError(path, f"an ISO 8601 time is required, got {show(value)}") from None
        if not 0 < seconds <= MAX_CREATED:
            raise EventError(path, "a time from 1970 to 9999 is required")
        return seconds
    return default


def shipment_of(doc: Any, path: str) -> uuid.UUID | None:
    value = member(doc, path)
    if value is None or value == "":
        return None
    try:
        return uuid.UUID(str(value)) if isinstance(value, str) and len(value) == 36 else _bad(path, value)
    except ValueError:
        return _bad(path, value)


def _bad(path: str, value: Any) -> uuid.UUID:
    raise EventError(path, f"a shipment UUID (8-4-4-4-12 hex digits) is required, got {show(value)}")
