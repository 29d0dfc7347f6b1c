"""One dispatch run: recover expired leases, then claim, deliver and finish batches until no row
is due or the time budget is spent.

Claims commit before any network I/O (one autocommit statement). Before each row the remaining
lease is checked: rows the lease could not cover are given back untouched, so a slow provider
never lets a lease expire under a send (which would let another dispatcher send it again).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psycopg

from jobs.notifications.channels import Channel, DeliveryError, build_channels
from jobs.notifications.queue import (
    Claimed,
    Failure,
    claim_due,
    mark_failed,
    mark_sent,
    reap_expired_leases,
    release,
)
from jobs.notifications.throttle import DEFAULT_MAX_WAIT_S, ChannelBusy, throttled
from workers.retry_policy import backoff_s

logger = logging.getLogger("skyport.notifications")

# Rows claimed per statement.
DEFAULT_BATCH = 100
# How long a claim holds its rows.
DEFAULT_LEASE_S = 120.0
# A dispatch run stops claiming after this long (the next wake-up or tick goes on).
DEFAULT_TIME_BUDGET_S = 50.0
# Extra seconds a row's sends must leave on the lease (clock skew, the finishing statement).
LEASE_MARGIN_S = 1.0


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (n = attempts made): exponential with equal jitter, capped."""

    base_s: float = 30.0
    max_s: float = 3600.0

    def delay_s(self, attempts: int) -> float:
        return backoff_s(attempts, self.base_s, self.max_s)


@dataclass
class DispatchStats:
    claimed: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    released: int = 0
    reaped: dict[str, int] = field(default_factory=dict)
    batches: int = 0

    def summary(self) -> str:
        """The run in a sentence (the command's output, the actor's log line)."""
        text = (
            f"claimed {self.claimed}, sent {self.sent}, failed {self.failed} (will retry), "
            f"dead {self.dead}, released {self.released}, in {self.batches} batch(es)"
        )
        if self.reaped:
            leases = ", ".join(f"{n} now {status}" for status, n in sorted(self.reaped.items()))
            text += f"; expired leases: {leases}"
        return text


def dispatcher_id() -> str:
    """Names this run in `locked_by`: host, process, and a random part per run."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def dispatch_configured(conn: psycopg.Connection) -> DispatchStats:
    """`dispatch_due` with the batch, lease, budget and backoff of the settings (actor and CLI)."""
    import config

    cfg = config.get()
    return dispatch_due(
        conn,
        batch=cfg.notifications.batch,
        lease_s=cfg.notifications.lease_s,
        time_budget_s=cfg.notifications.time_budget_s,
        backoff=Backoff(cfg.notifications.backoff_base_s, cfg.notifications.backoff_max_s),
    )


def dispatch_due(
    conn: psycopg.Connection,
    *,
    channels: Mapping[str, Channel] | None = None,
    batch: int = DEFAULT_BATCH,
    lease_s: float = DEFAULT_LEASE_S,
    time_budget_s: float = DEFAULT_TIME_BUDGET_S,
    backoff: Backoff | None = None,
    worker: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DispatchStats:
    """Deliver due notifications until none is due or `time_budget_s` has passed.

    `conn` must be in autocommit mode (each claim and each finish commits on its own)."""
    if not conn.autocommit:
        raise ValueError("dispatch_due needs an autocommit connection (claims commit before sending)")
    if channels is None:
        import config

        cfg = config.get().notifications
        channels = throttled(build_channels(cfg), cfg)
    backoff = backoff or Backoff()
    worker = worker or dispatcher_id()
    stats = DispatchStats(reaped=reap_expired_leases(conn))
    started = clock()
    try:
        while clock() - started < time_budget_s:
            claimed_at = clock()  # the lease runs from (just after) here
            rows = claim_due(conn, worker, batch, lease_s)
            if not rows:
                break
            stats.batches += 1
            stats.claimed += len(rows)
            released_before = stats.released
            _deliver_batch(
                conn,
                worker,
                rows,
                channels,
                backoff,
                lease_deadline=claimed_at + lease_s,
                stats=stats,
                clock=clock,
            )
            if len(rows) < batch and stats.released == released_before:  # drained
                break
    finally:
        for channel in channels.values():
            channel.close()
    return stats


def _deliver_batch(
    conn: psycopg.Connection,
    worker: str,
    rows: list[Claimed],
    channels: Mapping[str, Channel],
    backoff: Backoff,
    *,
    lease_deadline: float,
    stats: DispatchStats,
    clock: Callable[[], float],
) -> None:
    sent: list[int] = []
    failures: list[Failure] = []
    for index, row in enumerate(rows):
        todo = [c for c in row.send_via if c not in row.channels_done]
        worst_case_s = sum(getattr(channels.get(c), "timeout_s", 0.0) for c in todo) + LEASE_MARGIN_S
        network = any(c != "in_app" for c in todo)
        if network and clock() + worst_case_s > lease_deadline:
            if index > 0:
                stats.released += release(conn, worker, [r.queue_id for r in rows[index:]])
                logger.info("lease too short for %d more notifications: given back", len(rows) - index)
                break
            # Even a fresh lease is too short for this row's timeouts: a configuration error
            # (giving the row back would only loop). Go on, and say so.
            logger.error(
                "lease shorter than notification %s's channel timeouts (%.1f s): raise "
                "SKYPORT_NOTIFY_LEASE_S or lower the timeouts",
                row.queue_id,
                worst_case_s,
            )
        try:
            failure = _deliver_row(row, todo, channels, backoff)
        except ChannelBusy as busy:  # the channel's rate is booked far ahead: the rest waits
            stats.released += release(conn, worker, [r.queue_id for r in rows[index:]])
            logger.info("%s; %d notifications given back for the next run", busy, len(rows) - index)
            break
        if network:
            # It left the building: record it at once, so that a crash now re-sends this row
            # only, not the whole batch.
            _finish(
                conn, worker, [row.queue_id] if failure is None else [], [failure] if failure else [], stats
            )
        elif failure is None:
            sent.append(row.queue_id)
        else:
            failures.append(failure)
    _finish(conn, worker, sent, failures, stats)


def _finish(
    conn: psycopg.Connection, worker: str, sent: list[int], failures: list[Failure], stats: DispatchStats
) -> None:
    stats.sent += len(mark_sent(conn, worker, sent))
    for queue_id, status in mark_failed(conn, worker, failures).items():
        if status == "dead":
            stats.dead += 1
            logger.warning(
                "notification %s is dead: %s",
                queue_id,
                next(f.error for f in failures if f.queue_id == queue_id),
            )
        else:
            stats.failed += 1


def _deliver_row(
    row: Claimed, todo: list[str], channels: Mapping[str, Channel], backoff: Backoff
) -> Failure | None:
    """Send over each channel not yet done; None when all are done, else how it failed."""
    done = list(row.channels_done)
    errors: list[str] = []
    permanent = False
    retry_after_s = 0.0
    for name in todo:
        channel = channels.get(name)
        try:
            if channel is None:
                raise DeliveryError(
                    f"unknown channel {name!r} (known: {', '.join(sorted(channels))})", permanent=True
                )
            channel.send(row)
            done.append(name)
        except ChannelBusy as busy:
            if len(done) == len(row.channels_done):
                raise  # nothing sent yet: the row goes back untouched
            errors.append(f"{name}: {busy}")  # keep what was sent; the rest later
            retry_after_s = max(retry_after_s, DEFAULT_MAX_WAIT_S)
        except DeliveryError as exc:
            errors.append(f"{name}: {exc}")
            permanent = permanent or exc.permanent
            retry_after_s = max(retry_after_s, exc.retry_after_s or 0.0)
        except Exception as exc:  # a bug in a channel must not stop the other rows
            logger.exception("notification %s: channel %s crashed", row.queue_id, name)
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    if not errors:
        return None
    delay_s = max(backoff.delay_s(row.attempts), retry_after_s)
    return Failure(row.queue_id, "; ".join(errors)[:4000], permanent, delay_s, tuple(done))
