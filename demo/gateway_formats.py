"""The simulator's events in each gateway's own format, and their signatures: Standard Webhooks
(the internal event document, `webhook-*` headers), Stripe (Event objects, `Stripe-Signature`) and
Paystack (`{event, data}`, `x-paystack-signature`), shaped as the gateways document them.

`convert(stream, fmt)` takes one payment's internal events in their natural order (so that Stripe's
cumulative `amount_refunded` adds up) and returns the gateway's; `headers(fmt, secrets, raw)` signs
a raw body.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jobs.payments.events import signature_header
from jobs.payments.providers import paystack, standard

FORMATS = ("standard", "stripe", "paystack")
# Stripe's payment method type, Paystack's channel, of the seed's payment methods.
_STRIPE_METHOD = {"credit_card": "card", "bank_transfer": "us_bank_account", "mobile_money": "mobilepay"}
_PAYSTACK_CHANNEL = {"credit_card": "card", "bank_transfer": "bank_transfer", "mobile_money": "mobile_money"}
_STRIPE_INTENT = {
    "payment.processing": ("payment_intent.processing", "processing"),
    "payment.succeeded": ("payment_intent.succeeded", "succeeded"),
    "payment.failed": ("payment_intent.payment_failed", "requires_payment_method"),
    "payment.canceled": ("payment_intent.canceled", "canceled"),
}


def headers(fmt: str, secrets: str | Sequence[str], raw: bytes, msg_id: str | None = None) -> dict[str, str]:
    """The signature headers of a raw body in a gateway's format (one signature per secret)."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    now = int(time.time())
    if fmt == "stripe":
        return {"Stripe-Signature": signature_header(keys, raw, now)}
    if fmt == "paystack":
        return {"x-paystack-signature": paystack.sign(keys[0], raw)}
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    signatures = " ".join(
        f"v1,{standard.sign(key, msg_id, now, raw)}" for key in map(standard.key_of, keys) if key is not None
    )
    return {"webhook-id": msg_id, "webhook-timestamp": str(now), "webhook-signature": signatures}


def minor(amount: str | Decimal) -> int:
    """An amount of a two-decimal currency in its minor unit (cents, kobo, pesewas)."""
    return int(Decimal(amount) * 100)


def convert(stream: list[dict[str, Any]], fmt: str) -> list[dict[str, Any]]:
    """One payment's internal events (natural order) as the gateway sends them."""
    if fmt == "standard":
        return stream
    if fmt == "stripe":
        return _Stripe(stream[0]).events(stream)
    return _Paystack(stream[0]).events(stream)


def _digits(text: str, n: int = 9) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10**n


class _Stripe:
    def __init__(self, first: dict[str, Any]) -> None:
        data = first["data"]
        self.intent = f"pi_{data['idempotency_key'][-24:]}"
        self.charge = f"ch_{data['transaction_id'][-24:]}"
        self.refunded = 0

    def events(self, stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.event(body) for body in stream]

    def event(self, body: dict[str, Any]) -> dict[str, Any]:
        data, kind = body["data"], body["type"]
        if kind in _STRIPE_INTENT:
            stripe_type, obj = _STRIPE_INTENT[kind][0], self.payment_intent(body)
        elif kind == "payment.refunded":
            self.refunded += minor(data["refund"]["amount"])
            stripe_type, obj = "charge.refunded", self.charge_object(data)
        else:
            closed = kind != "dispute.opened"
            stripe_type = "charge.dispute.closed" if closed else "charge.dispute.created"
            obj = self.dispute(data, kind.removeprefix("dispute.") if closed else "needs_response")
        return {
            "id": body["id"], "object": "event", "api_version": "2024-06-20",
            "created": body["created"], "livemode": False, "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None}, "type": stripe_type, "data": {"object": obj},
        }  # fmt: skip

    def payment_intent(self, body: dict[str, Any]) -> dict[str, Any]:
        data = body["data"]
        amount, status = minor(data["amount"]), _STRIPE_INTENT[body["type"]][1]
        failed = body["type"] == "payment.failed"
        error = {"code": "card_declined", "message": data["failure_reason"]} if failed else None
        return {
            "id": self.intent, "object": "payment_intent", "amount": amount,
            "amount_received": amount if status == "succeeded" else 0, "currency": data["currency"].lower(),
            "status": status, "metadata": {"shipment_id": data["shipment_id"]},
            "payment_method_types": [_STRIPE_METHOD.get(data["payment_method"], "card")],
            "latest_charge": self.charge,
            "last_payment_error": error,
        }  # fmt: skip

    def charge_object(self, data: dict[str, Any]) -> dict[str, Any]:
        amount = minor(data["amount"])
        return {
            "id": self.charge, "object": "charge", "amount": amount, "amount_captured": amount,
            "amount_refunded": self.refunded, "refunded": self.refunded == amount,
            "currency": data["currency"].lower(), "payment_intent": self.intent, "status": "succeeded",
            "metadata": {}, "payment_method_details": {"type": "card"},
        }  # fmt: skip

    def dispute(self, data: dict[str, Any], status: str) -> dict[str, Any]:
        return {
            "id": f"dp_{data['dispute']['id'][-24:]}", "object": "dispute",
            "amount": minor(data["dispute"]["amount"]), "currency": data["currency"].lower(),
            "charge": self.charge, "payment_intent": self.intent, "status": status,
            "reason": "fraudulent", "metadata": {}, "created": int(time.time()),
        }  # fmt: skip


class _Paystack:
    def __init__(self, first: dict[str, Any]) -> None:
        data = first["data"]
        self.reference = data["idempotency_key"]
        self.transaction = {
            "id": _digits(data["transaction_id"]), "reference": self.reference,
            "amount": minor(data["amount"]) if data["amount"] else 0, "currency": data["currency"],
            "metadata": {"shipment_id": data["shipment_id"]},
        }  # fmt: skip

    def events(self, stream: list[dict[str, Any]]) -> list[dict[str, Any]]:
        # Paystack tells of a successful charge only: processing and failed attempts send nothing.
        return [self.event(b) for b in stream if b["type"] not in ("payment.processing", "payment.failed")]

    def event(self, body: dict[str, Any]) -> dict[str, Any]:
        data, kind = body["data"], body["type"]
        at = datetime.fromtimestamp(body["created"], UTC).isoformat().replace("+00:00", ".000Z")
        if kind == "payment.succeeded":
            channel = _PAYSTACK_CHANNEL.get(data["payment_method"], "card")
            return {"event": "charge.success", "data": {
                **self.transaction, "domain": "live", "status": "success", "message": None,
                "gateway_response": "Approved", "paid_at": at, "created_at": at, "channel": channel,
                "fees": 150, "customer": {"email": "payer@example.com"},
            }}  # fmt: skip
        if kind == "payment.refunded":
            return {"event": "refund.processed", "data": {  # as Paystack's example: no id, a string
                "status": "processed", "domain": "live",
                "transaction_reference": self.reference, "refund_reference": data["refund"]["id"],
                "amount": str(minor(data["refund"]["amount"])), "currency": data["currency"],
                "customer": {"email": "payer@example.com"}, "createdAt": at,
            }}  # fmt: skip
        resolution = {"dispute.won": "declined", "dispute.lost": "merchant-accepted"}.get(kind)
        status = "resolved" if resolution else "awaiting-merchant-feedback"
        return {"event": "charge.dispute.resolve" if resolution else "charge.dispute.create", "data": {
            "id": _digits(data["dispute"]["id"]), "refund_amount": minor(data["dispute"]["amount"]),
            "currency": data["currency"], "status": status,
            "resolution": resolution, "domain": "live", "category": "chargeback",
            "transaction": self.transaction, "createdAt": at,
        }}  # fmt: skip
