"""Delivery channels: email over SMTP, SMS and push as JSON over HTTP, in-app.

A channel's `send` returns when the provider accepted the notification, or raises
`DeliveryError`: `permanent=True` when trying again cannot help (invalid address, HTTP 4xx other
than 408/429, SMTP 5xx for the recipient or the message), else it is retried with backoff.
A channel that is not configured raises a transient error naming the missing setting: the row
waits (and ends dead after its attempts, for ops to retry once the setting is there).

Idempotency toward providers: emails carry a Message-ID derived from the dedup key, HTTP requests
an `Idempotency-Key: <dedup_key>:<channel>` header. A provider that honours them drops the copy a
dispatcher crash between "provider accepted" and "row marked sent" can cause.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import math
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Protocol

from config import NotificationsConfig
from jobs.notifications.queue import Claimed

logger = logging.getLogger("skyport.notifications")

# HTTP statuses that mean "try again later" although they are 4xx.
RETRYABLE_4XX = frozenset({408, 425, 429})
# Longest Retry-After we honour (seconds); longer ones are capped.
MAX_RETRY_AFTER_S = 3600.0


class DeliveryError(Exception):
    """A channel could not deliver. `retry_after_s`: the provider asked for this delay."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool = False,
        retry_after_s: float | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after_s = retry_after_s
        self.status = status  # the provider's HTTP status, when it answered one


class Channel(Protocol):
    name: str
    # Longest a single send may take (for the lease check before each row).
    timeout_s: float

    def send(self, notification: Claimed) -> None: ...

    def close(self) -> None: ...


class InAppChannel:
    """The row is the notification: the user's inbox reads notification_queue."""

    name = "in_app"
    timeout_s = 0.0

    def send(self, notification: Claimed) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class UnconfiguredChannel:
    name: str
    setting: str
    timeout_s: float = 0.0

    def send(self, notification: Claimed) -> None:
        raise DeliveryError(f"channel {self.name!r} is not configured ({self.setting} is not set)")

    def close(self) -> None:
        return None


@dataclass
class SmtpChannel:
    """Email over SMTP; one connection is kept for a whole dispatch run and reopened after errors."""

    host: str
    port: int
    tls: str  # starttls | ssl | none
    sender: str
    user: str | None = None
    password: str | None = None
    timeout_s: float = 10.0
    name: str = "email"
    _smtp: smtplib.SMTP | None = field(default=None, repr=False)

    def _connect(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        context = ssl.create_default_context()
        if self.tls == "ssl":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.host, self.port, timeout=self.timeout_s, context=context
            )
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
            if self.tls == "starttls":
                smtp.starttls(context=context)
        if self.user:
            smtp.login(self.user, self.password or "")
        self._smtp = smtp
        return smtp

    def send(self, notification: Claimed) -> None:
        to = str(notification.metadata.get("email") or notification.email or "")
        _, address = parseaddr(to)
        if not address or "@" not in address or address.startswith("@") or address.endswith("@"):
            raise DeliveryError(f"invalid email address {to!r}", permanent=True)
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = address
        msg["Subject"] = notification.title
        msg["Message-ID"] = message_id(notification.dedup_key)
        msg["X-Skyport-Notification"] = str(notification.queue_id)
        msg.set_content(notification.message)
        try:
            self._connect().send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"SMTP refused {address}: {exc.recipients}", permanent=all(c >= 500 for c in codes)
            ) from None
        except smtplib.SMTPDataError as exc:
            self.close()
            raise DeliveryError(
                f"SMTP refused the message: {exc.smtp_code} {exc.smtp_error!r}",
                permanent=exc.smtp_code >= 500,
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            # Authentication, sender refused, disconnects, timeouts, TLS: configuration or the
            # server, not this notification: retried.
            self.close()
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except (smtplib.SMTPException, OSError):
                self._smtp.close()
            self._smtp = None


def message_id(dedup_key: str) -> str:
    """A stable Message-ID per notification: a resent copy has the same one."""
    return f"<{hashlib.sha256(dedup_key.encode()).hexdigest()[:32]}@notifications.skyport>"


@dataclass
class HttpChannel:
    """A provider that takes one JSON POST per notification (SMS gateways, push services).

    Body: {"channel", "to", "user_id", "type", "title", "message", "dedup_key", "metadata"}.
    Headers: `Authorization: Bearer <token>` when a token is set, `Idempotency-Key`."""

    name: str
    url: str
    token: str | None = None
    timeout_s: float = 10.0
    # Which address the provider needs: "phone" (SMS) or "push" (a device token, else the user id).
    recipient: str = "phone"

    def _to(self, n: Claimed) -> str:
        if self.recipient == "phone":
            to = n.metadata.get("phone") or n.phone
            if not to or not str(to).strip():
                raise DeliveryError(f"no phone number for user {n.user_id}", permanent=True)
            return str(to).strip()
        return str(n.metadata.get("push_token") or n.user_id)

    def send(self, notification: Claimed) -> None:
        body = {
            "channel": self.name,
            "to": self._to(notification),
            "user_id": str(notification.user_id),
            "type": notification.notification_type,
            "title": notification.title,
            "message": notification.message,
            "dedup_key": notification.dedup_key,
            "metadata": notification.metadata,
        }
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": f"{notification.dedup_key}:{self.name}",
        }
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(
            self.url, data=json.dumps(body, default=str).encode(), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode(errors="replace").strip()
            permanent = 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX
            raise DeliveryError(
                f"{self.name} provider answered HTTP {exc.code}: {detail[:300]}",
                permanent=permanent,
                retry_after_s=_retry_after_s(exc.headers),
                status=exc.code,
            ) from None
        except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(
                f"{self.name} provider {self.url}: {type(reason).__name__}: {reason}"
            ) from None

    def close(self) -> None:
        return None


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    value = (headers or {}).get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _seconds_until(value)  # an HTTP date (RFC 9110 allows either)
    if seconds is None or not math.isfinite(seconds):
        return None  # "nan", "inf": no number of seconds
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _seconds_until(http_date: str) -> float | None:
    """Seconds from now until an HTTP date (None: not one)."""
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return (when - datetime.now(UTC)).total_seconds()


def build_channels(cfg: NotificationsConfig) -> dict[str, Channel]:
    """The channels the settings configure (unconfigured ones fail rows with a clear error)."""
    channels: dict[str, Channel] = {"in_app": InAppChannel()}
    if cfg.smtp_host:
        channels["email"] = SmtpChannel(
            cfg.smtp_host,
            cfg.smtp_port,
            cfg.smtp_tls,
            cfg.smtp_from,
            cfg.smtp_user,
            cfg.smtp_password,
            cfg.smtp_timeout_s,
        )
    else:
        channels["email"] = UnconfiguredChannel("email", "SKYPORT_SMTP_HOST")
    if cfg.sms_url:
        channels["sms"] = HttpChannel("sms", cfg.sms_url, cfg.sms_token, cfg.sms_timeout_s, "phone")
    else:
        channels["sms"] = UnconfiguredChannel("sms", "SKYPORT_SMS_URL")
    if cfg.push_url:
        channels["push"] = HttpChannel("push", cfg.push_url, cfg.push_token, cfg.push_timeout_s, "push")
    else:
        channels["push"] = UnconfiguredChannel("push", "SKYPORT_PUSH_URL")
    return channels
