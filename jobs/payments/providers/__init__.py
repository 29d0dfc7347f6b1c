"""Gateway adapters by the name PAYMENT_PROVIDER_<PROVIDER> gives them. Adding a gateway is one module
with an ADAPTER (jobs/payments/providers/base.py's Adapter) and its line here."""

from __future__ import annotations

from jobs.payments.providers import paystack, standard, stripe
from jobs.payments.providers.base import Adapter, Ignored, Parsed

ADAPTERS: dict[str, Adapter] = {
    "standard": standard.ADAPTER,
    "stripe": stripe.ADAPTER,
    "paystack": paystack.ADAPTER,
}

__all__ = ["ADAPTERS", "Adapter", "Ignored", "Parsed"]
