"""Standard Webhooks (the open specification behind Svix and others), and our own simulator.

    webhook-id: <message id>   webhook-timestamp: <unix seconds>
    webhook-signature: v1,<base64 HMAC-SHA256(secret, "<id>.<timestamp>.<raw body>")> [v1,<...> ...]

The secret is `whsec_<base64 of the key>` (a secret that is not base64 is used as its UTF-8
bytes). The body is the internal event document (jobs/payments/events.py); another `type` is
stored ignored (a 400 would have the sender retry it for days). A request without
`webhook-signature` may still carry the deprecated `Skyport-Signature` header (t=, v1=:
HMAC-SHA256 keyed by the secret as written).
Verified here rather than by PyPI `standardwebhooks` (whose tests sign our test requests): its
tolerance is fixed at five minutes, ours is PAYMENT_WEBHOOK_TOLERANCE_S.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from typing import Any

from db.states import EVENT_TYPES
from jobs.payments.events import SIGNATURE_HEADER, SignatureError, parse_document, verify_signature
from jobs.payments.providers.base import Ignored, Parsed, text, unix_time

_TIMESTAMP = re.compile(r"[0-9]{1,12}", re.ASCII)
_SIGNATURE = re.compile(r"v1,([A-Za-z0-9+/]{43}=)", re.ASCII)
SECRET_PREFIX = "whsec_"


def key_of(secret: str) -> bytes | None:
    """The HMAC key of a `whsec_<base64>` (or bare base64) secret; a secret that is not base64 (a
    hand-written one) is its UTF-8 bytes. None: empty."""
    text = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(text, validate=True) or None
    except (binascii.Error, ValueError):
        return text.encode() or None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class Standard:
    name = "standard"

    def verify(
        self, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], tolerance_s: float, now: float
    ) -> None:
        signatures = headers.get("webhook-signature")
        if signatures is None and headers.get(SIGNATURE_HEADER) is not None:  # the deprecated alias
            verify_signature(headers.get(SIGNATURE_HEADER), body, secrets, tolerance_s, now)
            return
        msg_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp")
        if not signatures or not msg_id or not timestamp:
            raise SignatureError("missing webhook-id, webhook-timestamp or webhook-signature header")
        if not _TIMESTAMP.fullmatch(timestamp):
            raise SignatureError("malformed webhook-timestamp (unix seconds in ASCII digits)")
        if abs(now - int(timestamp)) > tolerance_s:
            raise SignatureError(f"webhook-timestamp outside the tolerance of {tolerance_s:.0f}s")
        candidates = [m.group(1) for part in signatures.split(" ") if (m := _SIGNATURE.fullmatch(part))]
        keys = [key for key in map(key_of, secrets) if key is not None]
        matched = False  # every pair compared in constant time, no early exit
        for key in keys:
            expected = sign(key, msg_id, int(timestamp), body)
            for candidate in candidates:
                matched |= hmac.compare_digest(expected, candidate)
        if not matched:
            raise SignatureError("no webhook-signature matches")

    def parse(self, doc: Any) -> Parsed:
        kind = doc.get("type") if isinstance(doc, dict) else None
        if isinstance(kind, str) and kind not in EVENT_TYPES:  # a Svix-style sender has many
            kind = text(doc, "type", max_len=100) or kind
            reason = f"event type {kind} moves no money here"
            return Ignored(text(doc, "id") or "", kind, unix_time(doc, "created"), reason)
        return parse_document(doc)


ADAPTER = Standard()
