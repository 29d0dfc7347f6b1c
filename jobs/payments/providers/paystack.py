"""Paystack: `x-paystack-signature: <hex HMAC-SHA512(secret key, raw body)>` (no timestamp).

Events (`{"event", "data"}`; Paystack sends no event id, so the id is the type and the object's id):
- `charge.success`: a transaction; `reference` is the payment's idempotency key, the shipment is
  `metadata.shipment_id` (a transaction without one is not a shipment's: ignored); `channel`
  card, bank, bank_transfer, ussd, mobile_money, ...
- `refund.processed`: one refund of the transaction `transaction_reference`; Paystack's own example
  has no `id` (the refund is its `refund_reference`) and its `amount` as a string of minor units.
- `charge.dispute.create`, `charge.dispute.resolve` (`resolution`: `declined` means the merchant
  won, `merchant-accepted` that the customer was refunded: lost).
Amounts are in the currency's minor unit (kobo, pesewas, cents). Other types are ignored.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from jobs.payments.body import EventError, decode_body, show
from jobs.payments.events import Movement, PaymentEvent, SignatureError
from jobs.payments.providers.base import (
    Ignored,
    Parsed,
    currency,
    from_minor,
    iso_time,
    member,
    shipment_of,
    text,
)

HEADER = "x-paystack-signature"
_HEX_SHA512 = re.compile(r"[0-9a-f]{128}", re.ASCII)
_CHANNELS = {
    "card": "credit_card",
    "bank": "bank_transfer",
    "bank_transfer": "bank_transfer",
    "ussd": "bank_transfer",
    "dedicated_nuban": "bank_transfer",
    "mobile_money": "mobile_money",
}
# Dispute resolutions: the merchant won (the money stays) or lost (it went back to the customer).
_RESOLUTIONS = {"declined": "dispute.won", "merchant-accepted": "dispute.lost"}
_TIMES = ("data.paid_at", "data.paidAt", "data.createdAt", "data.created_at")


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha512).hexdigest()


def _id(doc: Any, path: str) -> str:
    value = member(doc, path)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(doc, path, max_len=100) or ""


def _shipment(doc: Any, path: str) -> uuid.UUID | None:
    """`<path>.shipment_id`; the metadata may be an object or, as Paystack's API takes it,
    stringified JSON (read with the body's own bounds)."""
    metadata = member(doc, path)
    if not isinstance(metadata, str) or not metadata.startswith("{"):
        return shipment_of(doc, f"{path}.shipment_id")
    try:
        return shipment_of(decode_body(metadata.encode()), "shipment_id")
    except EventError as exc:
        if exc.field != "shipment_id":
            return None  # not JSON after all: no shipment named
        raise EventError(f"{path}.shipment_id", exc.message) from None


def _ignored_id(doc: Any) -> str:
    """What tells apart events of a type not read here: the object's id, else a digest of the
    data (refund.pending and others have no id; a 400 would have Paystack retry for 72 hours)."""
    value = member(doc, "data.id")
    if isinstance(value, int | str) and not isinstance(value, bool) and 0 < len(str(value)) <= 100:
        return str(value)
    canonical = json.dumps(doc["data"], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:40]


class Paystack:
    name = "paystack"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], tolerance_s: float, now: float
    ) -> None:
        given = (headers.get(HEADER) or "").strip().lower()
        if not _HEX_SHA512.fullmatch(given):
            raise SignatureError(f"missing or malformed {HEADER} header (hex HMAC-SHA512)")
        matched = False  # every secret compared in constant time, no early exit
        for secret in secrets:
            matched |= hmac.compare_digest(sign(secret, body), given)
        if not matched:
            raise SignatureError(f"{HEADER} does not match")

    def parse(self, doc: Any) -> Parsed:
        kind = text(doc, "event", max_len=100) if isinstance(doc, dict) else None
        if kind is None or not isinstance(doc.get("data"), dict):
            raise EventError("data" if kind else "event", "a Paystack event {event, data} is required")
        created = iso_time(doc, *_TIMES, default=int(time.time()))
        if kind == "charge.success":
            return self._charge(doc, created)
        if kind == "refund.processed":
            return self._refund(doc, created)
        if kind in ("charge.dispute.create", "charge.dispute.resolve"):
            return self._dispute(doc, kind, created)
        reason = f"Paystack event {kind} moves no money here"
        return Ignored(f"{kind}:{_ignored_id(doc)}", kind, created, reason)

    def _charge(self, doc: Any, created: int) -> Parsed:
        event_id = f"charge.success:{_id(doc, 'data.id')}"
        shipment = _shipment(doc, "data.metadata")
        if shipment is None:
            return Ignored(event_id, "charge.success", created, "the transaction has no metadata.shipment_id")
        code = currency(doc, "data.currency")
        channel = member(doc, "data.channel")
        return PaymentEvent(
            id=event_id,
            type="payment.succeeded",
            created=created,
            transaction_id=_id(doc, "data.id"),
            idempotency_key=text(doc, "data.reference", max_len=100) or "",
            shipment_id=shipment,
            amount=from_minor(doc, "data.amount", code),
            currency=code,
            payment_method=_CHANNELS.get(channel, "other") if isinstance(channel, str) else None,
            failure_reason=None,
        )

    def _refund(self, doc: Any, created: int) -> Parsed:
        refund_id = _id(doc, "data.id" if member(doc, "data.id") is not None else "data.refund_reference")
        code = currency(doc, "data.currency")
        minor = member(doc, "data.amount")
        if isinstance(minor, str) and minor.isascii() and minor.isdigit() and len(minor) <= 15:
            minor = int(minor)  # "5000", as Paystack's example sends it
        amount = from_minor({"amount": minor}, "amount", code, field="data.amount")
        return PaymentEvent(
            id=f"refund.processed:{refund_id}",
            type="payment.refunded",
            created=created,
            transaction_id=refund_id,
            idempotency_key=text(doc, "data.transaction_reference", max_len=100) or "",
            shipment_id=None,
            amount=None,
            currency=code,
            payment_method=None,
            failure_reason=None,
            movement=Movement("refund", refund_id, amount),
        )

    def _dispute(self, doc: Any, kind: str, created: int) -> Parsed:
        dispute_id = _id(doc, "data.id")
        event_id = f"{kind}:{dispute_id}"
        if kind == "charge.dispute.create":
            internal = "dispute.opened"
        else:
            resolution = member(doc, "data.resolution")
            internal = _RESOLUTIONS.get(resolution) if isinstance(resolution, str) else None
            if internal is None:
                reason = f"dispute resolution {show(resolution)}, neither won nor lost"
                return Ignored(event_id, kind, created, reason)
        code = currency(doc, "data.currency")
        refund = member(doc, "data.refund_amount")
        disputed = isinstance(refund, int) and refund > 0
        amount_path = "data.refund_amount" if disputed else "data.transaction.amount"
        return PaymentEvent(
            id=event_id,
            type=internal,
            created=created,
            transaction_id=_id(doc, "data.transaction.id"),
            idempotency_key=text(doc, "data.transaction.reference", max_len=100) or "",
            shipment_id=_shipment(doc, "data.transaction.metadata"),
            amount=None,
            currency=code,
            payment_method=None,
            failure_reason=None,
            movement=Movement("dispute", dispute_id, from_minor(doc, amount_path, code)),
        )


ADAPTER = Paystack()
