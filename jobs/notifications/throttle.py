"""Channel rates shared by every dispatcher: `SKYPORT_SMS_RATE`, `SKYPORT_PUSH_RATE`,
`SKYPORT_SMTP_RATE` (e.g. `10/s`), and a provider's `429` with `Retry-After` holding the channel
for everyone.

Each send over a network channel first takes the channel's next start from the ledger's rate
schedule (`flow_rates`, key `notify:<channel>`; workers/flow.py), evenly spaced across every
dispatcher process, and sleeps until it. A `429` moves that schedule past its Retry-After, so
every dispatcher waits, not just the row that got it. A start further away than
`DEFAULT_MAX_WAIT_S` is not taken: the dispatcher gives its rows back untouched (no attempt
spent) and stops its run, and the next run goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from config import NotificationsConfig
from jobs.notifications.channels import Channel, DeliveryError, UnconfiguredChannel
from jobs.notifications.queue import Claimed
from workers import flow

logger = logging.getLogger("skyport.notifications")

# Longest a send waits for its channel's next start before the dispatcher gives its rows back.
DEFAULT_MAX_WAIT_S = 10.0
# A send reaches the provider up to this late after its start (sleep, the request on a busy host):
# starts are spaced by (period + this) / count, so a provider counting sends per period never sees
# more than its quota.
DEFAULT_SEND_JITTER_S = 0.1
# How long a 429 without Retry-After holds the channel.
DEFAULT_THROTTLE_S = 1.0
# Statuses that ask every sender to slow down.
THROTTLE_STATUSES = frozenset({429})


class ChannelBusy(Exception):
    """The channel's next start is further than the dispatcher waits: give the rows back."""


@dataclass
class ThrottledChannel:
    """A network channel whose sends follow its fleet-wide rate and its provider's 429s."""

    channel: Channel
    rate: flow.Rate | None
    max_wait_s: float = DEFAULT_MAX_WAIT_S

    @property
    def name(self) -> str:
        return self.channel.name

    @property
    def timeout_s(self) -> float:
        return self.channel.timeout_s + self.max_wait_s

    @property
    def key(self) -> str:
        return f"notify:{self.channel.name}"

    def send(self, notification: Claimed) -> None:
        wait_s = flow.rate_take(self.key, self.rate, self.max_wait_s)
        if wait_s is None:
            raise ChannelBusy(f"{self.name}: the next send is more than {self.max_wait_s:g} s away")
        if wait_s > 0:
            time.sleep(wait_s)
        try:
            self.channel.send(notification)
        except DeliveryError as exc:
            if exc.status in THROTTLE_STATUSES:
                hold_s = exc.retry_after_s or DEFAULT_THROTTLE_S
                flow.rate_hold_off_for(self.key, hold_s)
                logger.warning(
                    "%s provider asked to slow down: every dispatcher waits %.1f s", self.name, hold_s
                )
            raise

    def close(self) -> None:
        self.channel.close()


def throttled(channels: dict[str, Channel], cfg: NotificationsConfig) -> dict[str, Channel]:
    """The network channels wrapped with their rates (in-app and unconfigured ones as they are)."""
    rates = {"sms": cfg.sms_rate, "push": cfg.push_rate, "email": cfg.smtp_rate}
    wrapped: dict[str, Channel] = dict(channels)
    for name, rate in rates.items():
        channel = channels.get(name)
        if channel is not None and not isinstance(channel, UnconfiguredChannel):
            wrapped[name] = ThrottledChannel(channel, _spaced(rate) if rate else None)
    return wrapped


def _spaced(rate: tuple[int, float]) -> flow.Rate:
    """The channel's rate with room for a late send (DEFAULT_SEND_JITTER_S)."""
    count, period_s = rate
    return flow.Rate(count, period_s + DEFAULT_SEND_JITTER_S)
