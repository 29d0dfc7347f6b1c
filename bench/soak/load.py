"""The soak's load, one thread each: app enqueues, payment webhooks, notifications.

Each remembers what it asked for, so the final check can compare it with what happened.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

# Shares of the app's job rate.
PLAIN_SHARE = 0.45  # enqueue() one by one
BATCH_SHARE = 0.30  # enqueue_many, a third of them delayed 1-30 s
DEDUP_SHARE = 0.10  # new dedup keys (each enqueued 2-3 times)
DELAYED_SHARE = 0.05  # enqueue() with a delay of 5-60 s
FLAKY_SHARE = 0.05  # fail 1-2 attempts, then succeed
ROLLBACK_SHARE = 0.05  # enqueued in an app transaction that rolls back: must never exist
# A dedup key is held this long after its job finished: enqueueing it again never runs it again.
DEDUP_WINDOW_S = 86_400.0
# Mean work of a job (exponential), and the cap; a share of jobs works 0.5-3 s instead (so that a
# kill finds jobs running).
MEAN_WORK_MS = 40.0
MAX_WORK_MS = 500
LONG_SHARE = 0.1
LONG_WORK_MS = (500, 3000)
# The first poison job comes this long after the start (then one every --poison-every-s).
FIRST_POISON_S = 10.0

# Webhooks: provider name and secret of the soak's web process; callbacks per shipment.
PROVIDER = "soak"
WEBHOOK_SECRET = "whsec_soak"
EVENTS_PER_SHIPMENT = 10
WEBHOOK_ROUND_S = 10.0
WEBHOOK_CONCURRENCY = 8

# Notifications: attempts per row, the share of re-enqueued keys (must be refused as duplicates).
NOTIFICATION_MAX_ATTEMPTS = 5
NOTIFICATION_REPEAT_SHARE = 0.1
NOTIFICATION_USERS = 20


class _Pacer:
    """Whole counts per tick for a fractional rate, carrying the remainder."""

    def __init__(self, per_tick: float) -> None:
        self.per_tick = per_tick
        self.carry = 0.0

    def take(self) -> int:
        self.carry += self.per_tick
        whole = int(self.carry)
        self.carry -= whole
        return whole


def _ticks(stop: threading.Event, tick_s: float = 1.0) -> Any:
    """Yield once per tick until `stop` is set (a late tick does not pile up the next ones)."""
    next_at = time.monotonic()
    while not stop.is_set():
        yield
        next_at = max(next_at + tick_s, time.monotonic())
        if stop.wait(max(0.0, next_at - time.monotonic())):
            return


@dataclass
class AppLoad:
    """What the app enqueued: every job id by kind, the job ids each dedup key's calls returned."""

    jobs: dict[int, str] = field(default_factory=dict)  # job id -> kind
    dedup_refs: dict[str, set[int]] = field(default_factory=dict)  # key -> job ids returned
    dedup_created: Counter = field(default_factory=Counter)  # key -> calls that created a job
    rolled_back: list[int] = field(default_factory=list)  # ids returned inside rolled-back transactions
    calls: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


class AppLoadThread(threading.Thread):
    def __init__(
        self, rate: float, poison_every_s: float, database_url: str, stop: threading.Event, seed: int
    ) -> None:
        super().__init__(name="soak-app", daemon=True)
        self.stop_event = stop
        self.database_url = database_url
        self.rng = random.Random(seed)
        self.load = AppLoad()
        self.poison_every_s = poison_every_s
        self.pacers = {
            kind: _Pacer(rate * share)
            for kind, share in (
                ("plain", PLAIN_SHARE),
                ("batch", BATCH_SHARE),
                ("dedup", DEDUP_SHARE),
                ("delayed", DELAYED_SHARE),
                ("flaky", FLAKY_SHARE),
                ("rollback", ROLLBACK_SHARE),
            )
        }
        self.serial = 0
        self.repeat_keys: list[str] = []

    def _key(self, kind: str) -> str:
        self.serial += 1
        return f"soak:{kind}:{self.serial}"

    def _work_ms(self) -> int:
        if self.rng.random() < LONG_SHARE:
            return self.rng.randint(*LONG_WORK_MS)
        return min(MAX_WORK_MS, int(self.rng.expovariate(1 / MEAN_WORK_MS)))

    def run(self) -> None:
        from workers import JobSpec

        last_poison = time.monotonic() - self.poison_every_s + FIRST_POISON_S
        with psycopg.connect(self.database_url, autocommit=True) as app_conn:
            for _ in _ticks(self.stop_event):
                try:
                    self._second(JobSpec, app_conn)
                    if time.monotonic() - last_poison >= self.poison_every_s:
                        last_poison = time.monotonic() - self.poison_every_s + FIRST_POISON_S
                        self._enqueue("poison", "soak_poison", {"key": self._key("poison")})
                except Exception as exc:  # recorded; the final check fails on any
                    self.load.errors.append(f"{type(exc).__name__}: {exc}")

    def _second(self, job_spec: Any, app_conn: psycopg.Connection) -> None:
        from workers import enqueue

        for _ in range(self.pacers["plain"].take()):
            self._enqueue("plain", "soak_work", {"key": self._key("w"), "ms": self._work_ms()})
        for _ in range(self.pacers["delayed"].take()):
            kwargs = {"key": self._key("delayed"), "ms": self._work_ms()}
            self._enqueue("delayed", "soak_work", kwargs, delay=self.rng.uniform(5, 60))
        for _ in range(self.pacers["flaky"].take()):
            kwargs = {"key": self._key("flaky"), "failures": self.rng.randint(1, 2), "ms": self._work_ms()}
            self._enqueue("flaky", "soak_flaky", kwargs)
        for _ in range(self.pacers["rollback"].take()):
            with app_conn.transaction():
                ref = enqueue("soak_work", kwargs={"key": self._key("rollback")}, conn=app_conn)
                self.load.rolled_back.append(ref.id)
                self.load.calls["rollback"] += 1
                raise psycopg.Rollback()
        # Dedup keys: new ones now (half of them twice at once), then each once more in the next
        # second's batch, when many of their jobs have finished (the window keeps the key).
        repeats, self.repeat_keys = self.repeat_keys, []
        for _ in range(self.pacers["dedup"].take()):
            key = self._key("dedup")
            self._dedup(key)
            if self.rng.random() < 0.5:
                self._dedup(key)
            self.repeat_keys.append(key)
        specs = [
            job_spec(
                "soak_work",
                kwargs={"key": self._key("b"), "ms": self._work_ms()},
                delay=self.rng.uniform(1, 30) if self.rng.random() < 1 / 3 else None,
            )
            for _ in range(self.pacers["batch"].take())
        ]
        specs += [
            job_spec("soak_work", kwargs={"key": k, "ms": 0}, dedup_key=k, dedup_window=DEDUP_WINDOW_S)
            for k in repeats
        ]
        if specs:
            self._enqueue_many(specs)

    def _enqueue(self, kind: str, actor: str, kwargs: dict[str, Any], **options: Any) -> None:
        from workers import enqueue

        ref = enqueue(actor, kwargs=kwargs, **options)
        self.load.jobs[ref.id] = kind
        self.load.calls[kind] += 1

    def _dedup(self, key: str) -> None:
        from workers import enqueue

        ref = enqueue("soak_work", kwargs={"key": key, "ms": 0}, dedup_key=key, dedup_window=DEDUP_WINDOW_S)
        self._note_dedup(key, ref)

    def _note_dedup(self, key: str, ref: Any) -> None:
        self.load.jobs[ref.id] = "dedup"
        self.load.dedup_refs.setdefault(key, set()).add(ref.id)
        self.load.dedup_created[key] += int(ref.created)
        self.load.calls["dedup"] += 1

    def _enqueue_many(self, specs: list[Any]) -> None:
        from workers import enqueue_many

        for spec, ref in zip(specs, enqueue_many(specs), strict=True):
            if spec.dedup_key:
                self._note_dedup(spec.dedup_key, ref)
            else:
                self.load.jobs[ref.id] = "batch"
                self.load.calls["batch"] += 1


# ---- payment webhooks ------------------------------------------------------------------------


@dataclass
class WebhookLoad:
    expected_paid: dict[uuid.UUID, Decimal] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    posted: int = 0
    unique_events: int = 0


class WebhookThread(threading.Thread):
    """Rounds of WEBHOOK_ROUND_S: new shipments, the simulator's plan for them (duplicates, out of
    order, failed-then-paid, refunds), posted signed at `rate` callbacks/s."""

    def __init__(self, url: str, rate: float, database_url: str, stop: threading.Event, seed: int) -> None:
        super().__init__(name="soak-webhooks", daemon=True)
        self.url = url
        self.rate = rate
        self.database_url = database_url
        self.stop_event = stop
        self.seed = seed
        self.load = WebhookLoad()

    def run(self) -> None:
        from demo.payments_simulator import create_demo_shipments, plan_events, post_events

        events = max(1, round(self.rate * WEBHOOK_ROUND_S))
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            round_no = 0
            while not self.stop_event.is_set():
                round_no += 1
                try:
                    shipments = create_demo_shipments(
                        conn, max(1, events // EVENTS_PER_SHIPMENT), seed=self.seed + round_no
                    )
                    plan = plan_events(shipments, events=events, seed=self.seed + round_no)
                    self.load.expected_paid.update(plan.expected_paid)
                    stats = post_events(
                        self.url,
                        PROVIDER,
                        WEBHOOK_SECRET,
                        plan.bodies,
                        rate=self.rate,
                        concurrency=WEBHOOK_CONCURRENCY,
                    )
                except Exception as exc:
                    self.load.errors.append(f"{type(exc).__name__}: {exc}")
                    self.stop_event.wait(1)
                    continue
                self.load.posted += len(plan.bodies)
                self.load.unique_events += plan.unique_events
                self.load.statuses.update(stats.statuses)
                self.load.errors.extend(stats.errors[: max(0, 20 - len(self.load.errors))])


# ---- notifications ---------------------------------------------------------------------------


@dataclass
class NotificationLoad:
    created: set[str] = field(default_factory=set)  # dedup keys enqueue_notification created
    http_keys: set[str] = field(default_factory=set)  # those also sent over the HTTP channel
    repeats: int = 0
    repeats_accepted: list[str] = field(default_factory=list)  # a repeat that made a second row: a bug
    errors: list[str] = field(default_factory=list)


class NotificationThread(threading.Thread):
    """`rate` notifications/s through enqueue_notification: in-app, and a share over the HTTP
    channel ("sms") when `provider` (tests/notify/servers.HttpProvider) runs, which answers 503 to
    about `fail_share` of them (retried); a share of calls repeat an earlier key."""

    def __init__(
        self,
        database_url: str,
        rate: float,
        provider: Any,
        http_share: float,
        fail_share: float,
        stop: threading.Event,
        seed: int,
    ) -> None:
        super().__init__(name="soak-notifications", daemon=True)
        self.database_url = database_url
        self.pacer = _Pacer(rate)
        self.provider = provider
        self.http_share = http_share if provider is not None else 0.0
        self.fail_share = fail_share
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.load = NotificationLoad()

    def run(self) -> None:
        from jobs.notifications import enqueue_notification

        with psycopg.connect(self.database_url, autocommit=True) as conn:
            users = _create_users(conn, NOTIFICATION_USERS)
            serial = 0
            for _ in _ticks(self.stop_event):
                for _ in range(self.pacer.take()):
                    try:
                        if self.load.created and self.rng.random() < NOTIFICATION_REPEAT_SHARE:
                            key = self.rng.choice(sorted(self.load.created))
                            self.load.repeats += 1
                        else:
                            serial += 1
                            key = f"soak:notif:{serial}"
                        http = key in self.load.http_keys or (
                            key not in self.load.created and self.rng.random() < self.http_share
                        )
                        user_id, phone = self.rng.choice(users)
                        with conn.transaction():
                            created = enqueue_notification(
                                conn,
                                user_id,
                                "soak",
                                f"Soak {key}",
                                "A notification of the soak run",
                                key,
                                metadata={"phone": phone},
                                send_via=("in_app", "sms") if http else ("in_app",),
                                max_attempts=NOTIFICATION_MAX_ATTEMPTS,
                            )
                        if created and key in self.load.created:
                            self.load.repeats_accepted.append(key)
                        elif created:
                            self.load.created.add(key)
                            if http:
                                self.load.http_keys.add(key)
                                if self.rng.random() < self.fail_share:
                                    self.provider.plan.append(503)  # some request soon fails
                    except Exception as exc:
                        self.load.errors.append(f"{type(exc).__name__}: {exc}")


def _create_users(conn: psycopg.Connection, count: int) -> list[tuple[uuid.UUID, str]]:
    rows = conn.execute(
        """INSERT INTO users (email, password_hash, user_type, first_name, phone)
           SELECT 'soak-' || i || '-' || gen_random_uuid() || '@skyport.local', '!', 'private',
                  'Soak ' || i, '+1555' || lpad(i::text, 7, '0')
             FROM generate_series(1, %s) AS i
           RETURNING user_id, phone""",
        (count,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows]
