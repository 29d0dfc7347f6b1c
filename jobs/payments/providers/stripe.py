"""Stripe: `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>[,v1=...]`,
keyed by the endpoint secret as given (`whsec_` included); 300 s tolerance by default.

Events (an Event object: `id`, `type`, `created`, `data.object`):
- `payment_intent.processing|succeeded|payment_failed|canceled`: the PaymentIntent; its id is the
  payment's idempotency key, the shipment is `metadata.shipment_id` (a PaymentIntent without one
  is not a shipment's: ignored).
- `charge.refunded`: the Charge; `amount_refunded` is cumulative (partial refunds add up).
- `charge.dispute.created`, `charge.dispute.closed` (`won` / `lost`; an inquiry's `warning_closed`
  counts as won; other closings are ignored).
Amounts are in the currency's minor unit, currencies lower-case. Other types are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobs.payments.body import EventError, show
from jobs.payments.events import Movement, PaymentEvent, verify_signature
from jobs.payments.providers.base import (
    Ignored,
    Parsed,
    currency,
    from_minor,
    member,
    shipment_of,
    text,
    unix_time,
)

HEADER = "Stripe-Signature"
_INTENT_TYPES = {
    "payment_intent.processing": "payment.processing",
    "payment_intent.succeeded": "payment.succeeded",
    "payment_intent.payment_failed": "payment.failed",
    "payment_intent.canceled": "payment.canceled",
}
_CARD = {"card", "card_present", "link", "apple_pay", "google_pay", "interac_present"}
_BANK = {
    "us_bank_account", "sepa_debit", "bacs_debit", "au_becs_debit", "acss_debit", "customer_balance",
    "ach_credit_transfer", "ach_debit", "sofort", "ideal", "bancontact", "giropay", "eps", "p24", "fpx",
}  # fmt: skip
_MOBILE_MONEY = {"mobilepay", "mpesa", "m_pesa", "mtn_momo", "airtel_money"}
# How a dispute closes. An inquiry opens as charge.dispute.created too and closes as
# warning_closed when it does not become a chargeback: the money its opening took off returns.
_CLOSINGS = {"won": "dispute.won", "warning_closed": "dispute.won", "lost": "dispute.lost"}


def payment_method(kind: Any) -> str | None:
    """The seed's payment_method of a Stripe payment method type (None when not said)."""
    if not isinstance(kind, str):
        return None
    if kind in _CARD:
        return "credit_card"
    if kind in _BANK:
        return "bank_transfer"
    return "mobile_money" if kind in _MOBILE_MONEY else "other"


class Stripe:
    name = "stripe"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], tolerance_s: float, now: float
    ) -> None:
        verify_signature(headers.get(HEADER), body, secrets, tolerance_s, now, name=HEADER)

    def parse(self, doc: Any) -> Parsed:
        if not isinstance(doc, dict):
            raise EventError("body", "a JSON object is required")
        event_id = text(doc, "id")
        kind = text(doc, "type", max_len=100)
        created = unix_time(doc, "created")
        obj = member(doc, "data.object")
        if not isinstance(obj, dict):
            raise EventError("data.object", "an object is required")
        try:
            return self._object(event_id, kind, created, obj)
        except EventError as exc:  # named from the body's top: data.object.<field>
            raise EventError(f"data.object.{exc.field}", exc.message) from None

    def _object(self, event_id: str, kind: str, created: int, obj: dict) -> Parsed:
        if kind in _INTENT_TYPES:
            return self._intent(event_id, _INTENT_TYPES[kind], created, obj, kind)
        if kind == "charge.refunded":
            return self._refund(event_id, created, obj)
        if kind in ("charge.dispute.created", "charge.dispute.closed"):
            return self._dispute(event_id, kind, created, obj)
        return Ignored(event_id, kind, created, f"Stripe event type {kind} moves no money here")

    def _intent(self, event_id: str, internal: str, created: int, obj: dict, kind: str) -> Parsed:
        shipment = shipment_of(obj, "metadata.shipment_id")
        if shipment is None:
            return Ignored(event_id, kind, created, "the PaymentIntent has no metadata.shipment_id")
        code = currency(obj, "currency")
        types = obj.get("payment_method_types")
        error = member(obj, "last_payment_error.message")
        return PaymentEvent(
            id=event_id,
            type=internal,
            created=created,
            transaction_id=text(obj, "id"),
            idempotency_key=text(obj, "id", max_len=100),
            shipment_id=shipment,
            amount=from_minor(obj, "amount", code),
            currency=code,
            payment_method=payment_method(types[0] if isinstance(types, list) and types else None),
            failure_reason=error[:1000] if isinstance(error, str) and internal == "payment.failed" else None,
        )

    def _refund(self, event_id: str, created: int, charge: dict) -> Parsed:
        code = currency(charge, "currency")
        key = text(charge, "payment_intent", max_len=100, required=False) or text(charge, "id", max_len=100)
        refunded = from_minor(charge, "amount_refunded", code, allow_zero=True)
        if refunded == 0:
            return Ignored(event_id, "charge.refunded", created, "amount_refunded is 0")
        return PaymentEvent(
            id=event_id,
            type="payment.refunded",
            created=created,
            transaction_id=text(charge, "id"),
            idempotency_key=key,
            shipment_id=shipment_of(charge, "metadata.shipment_id"),
            amount=from_minor(charge, "amount", code),
            currency=code,
            payment_method=payment_method(member(charge, "payment_method_details.type")),
            failure_reason=None,
            movement=Movement("refund", None, refunded),
        )

    def _dispute(self, event_id: str, kind: str, created: int, dispute: dict) -> Parsed:
        status = member(dispute, "status")
        if kind == "charge.dispute.created":
            internal = "dispute.opened"
        elif isinstance(status, str) and status in _CLOSINGS:
            internal = _CLOSINGS[status]
        else:
            return Ignored(event_id, kind, created, f"dispute closed as {show(status)}, neither won nor lost")
        code = currency(dispute, "currency")
        disputed = from_minor(dispute, "amount", code)
        charge = text(dispute, "charge")
        return PaymentEvent(
            id=event_id,
            type=internal,
            created=created,
            transaction_id=charge,
            idempotency_key=text(dispute, "payment_intent", max_len=100, required=False) or charge,
            shipment_id=shipment_of(dispute, "metadata.shipment_id"),
            amount=None,
            currency=code,
            payment_method=None,
            failure_reason=None,
            movement=Movement("dispute", text(dispute, "id", max_len=100), disputed),
        )


ADAPTER = Stripe()
