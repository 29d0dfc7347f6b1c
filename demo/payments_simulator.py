"""A payment gateway simulator: realistic callbacks for a set of shipments, signed and posted to a
running web process, with duplicates and out-of-order deliveries, and the ledger they must produce.

Each payment of a shipment goes processing -> succeeded (or -> failed, then paid again under a new
idempotency key); some succeeded payments are later partly refunded (one or two refunds), some
disputed (a chargeback, then won or lost). The expected final `amount_paid` of every shipment is
known in advance, whatever the delivery order. The events go out in the format of a Standard
Webhooks provider, of Stripe or of Paystack (demo/gateway_formats.py), signed as each gateway signs.

Its command: `python -m demo simulate-payments` (demo/cli.py). The bench, the soak and the tests use
its functions; the product does not.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import psycopg

from demo.delivery import Connection, Endpoint, ProtocolError
from demo.gateway_formats import convert, headers

# Demo shipments' totals are drawn between these (USD).
DEMO_MIN_TOTAL = Decimal("300.00")
DEMO_MAX_TOTAL = Decimal("3000.00")
# The demo rows' markers: tracking numbers start with this, the demo user has this email.
DEMO_TRACKING_PREFIX = "SIMPAY-"
DEMO_EMAIL = "payments-simulator@skyport.local"


@dataclass
class Plan:
    bodies: list[dict[str, Any]]  # in delivery order, duplicates included
    expected_paid: dict[uuid.UUID, Decimal]
    unique_events: int = 0
    payments: int = 0


@dataclass
class PostStats:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_s: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return 0.0
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# ---- shipments -------------------------------------------------------------------------------


# -- simulator_demo_shipments -- demo shipments (with a demo user, service and two countries).
DEMO_SHIPMENTS_INSERT = """
INSERT INTO shipments (tracking_number, user_id, service_id, origin_country_id, destination_country_id,
                       currency, total_cost, amount_due, cargo_description)
SELECT %(prefix)s || replace(gen_random_uuid()::text, '-', ''), %(user_id)s, %(service_id)s,
       %(origin)s, %(destination)s, 'USD', t.total, t.total, 'payments simulator demo'
  FROM unnest(%(totals)s::numeric[]) AS t(total)
RETURNING shipment_id, total_cost
"""


def create_demo_shipments(conn: psycopg.Connection, count: int, seed: int | None = None) -> list[tuple]:
    """`count` new unpaid USD shipments; returns (shipment_id, total_cost, amount_paid) rows."""
    rng = random.Random(seed)
    with conn.transaction():
        user_id = conn.execute(
            """INSERT INTO users (email, password_hash, user_type, first_name)
               VALUES (%s, '!', 'business', 'Payments simulator')
               ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING user_id""",
            (DEMO_EMAIL,),
        ).fetchone()[0]
        service = conn.execute(
            "SELECT service_id FROM freight_services ORDER BY service_id LIMIT 1"
        ).fetchone()
        if service is None:
            service = conn.execute(
                "INSERT INTO freight_services (service_name, service_type) VALUES ('Demo air', 'air') "
                "RETURNING service_id"
            ).fetchone()
        countries = [
            r[0]
            for r in conn.execute("SELECT country_id FROM countries ORDER BY country_id LIMIT 2").fetchall()
        ]
        for code in ("ZZA", "ZZB")[: 2 - len(countries)]:
            countries.append(
                conn.execute(
                    "INSERT INTO countries (country_code, country_name) VALUES (%s, %s) "
                    "ON CONFLICT (country_code) DO UPDATE SET country_name = EXCLUDED.country_name "
                    "RETURNING country_id",
                    (code, f"Demo {code}"),
                ).fetchone()[0]
            )
        span = int((DEMO_MAX_TOTAL - DEMO_MIN_TOTAL) * 100)
        totals = [DEMO_MIN_TOTAL + Decimal(rng.randint(0, span)) / 100 for _ in range(count)]
        rows = conn.execute(
            DEMO_SHIPMENTS_INSERT,
            {
                "prefix": DEMO_TRACKING_PREFIX,
                "user_id": user_id,
                "service_id": service[0],
                "origin": countries[0],
                "destination": countries[-1],
                "totals": totals,
            },
        ).fetchall()
    return [(sid, total, Decimal("0.00")) for sid, total in rows]


def payable_shipments(conn: psycopg.Connection, limit: int) -> list[tuple]:
    """Existing USD shipments with something left to pay (the simulator's default targets)."""
    return conn.execute(
        """SELECT shipment_id, total_cost, amount_paid FROM shipments
            WHERE deleted_at IS NULL AND total_cost IS NOT NULL AND amount_paid < total_cost
              AND coalesce(currency, 'USD') = 'USD'
            ORDER BY created_at DESC LIMIT %s""",
        (limit,),
    ).fetchall()


# ---- the plan --------------------------------------------------------------------------------


def plan_events(
    shipments: Sequence[tuple],
    *,
    events: int,
    duplicates: float = 0.05,
    out_of_order: float = 0.1,
    failures: float = 0.05,
    refunds: float = 0.05,
    disputes: float = 0.0,
    seed: int | None = None,
    created: int | None = None,
    fmt: str = "standard",
) -> Plan:
    """About `events` deliveries (duplicates included) for the shipments (id, total, paid), in the
    gateway format `fmt`."""
    rng = random.Random(seed)
    now = int(time.time()) if created is None else created
    remaining = {sid: Decimal(total) - Decimal(paid) for sid, total, paid in shipments}
    expected = {sid: Decimal(paid) for sid, _, paid in shipments}
    unique_target = max(1, round(events / (1 + duplicates)))
    streams: list[list[dict[str, Any]]] = []  # each payment's events in their natural order
    produced = 0
    order = [sid for sid, _, _ in shipments]
    exhausted: set[uuid.UUID] = set()
    payments = 0
    while produced < unique_target and len(exhausted) < len(order):
        for sid in order:
            if produced >= unique_target:
                break
            if remaining[sid] < Decimal("1.00"):
                exhausted.add(sid)
                continue
            amount = min(remaining[sid], Decimal(rng.randint(500, 40000)) / 100)
            fate = rng.random()
            if fate < refunds + disputes:  # succeeds, then refunded in part or disputed
                stream, kept = _moved_payment(sid, amount, rng, now, refund=fate < refunds)
                expected[sid] += kept  # its whole amount stays reserved: never paid twice
            else:
                stream = []
                if fate < refunds + failures:  # fails first, then paid under a new key
                    stream = _payment(sid, amount, rng, now, "payment.failed")
                    streams.append(stream)
                    payments += 1
                stream_ok = _payment(sid, amount, rng, now, "payment.succeeded")
                produced += len(stream)
                stream = stream_ok
                expected[sid] += amount
            streams.append(stream)
            payments += 1
            produced += len(stream)
            remaining[sid] -= amount
    streams = [convert(stream, fmt) for stream in streams]
    bodies = _interleave(streams, rng)
    bodies = _disorder(bodies, rng, out_of_order)
    unique = len(bodies)
    bodies = _duplicate(bodies, rng, duplicates)
    return Plan(bodies, expected, unique, payments)


def _moved_payment(
    sid: uuid.UUID, amount: Decimal, rng: random.Random, now: int, *, refund: bool
) -> tuple[list[dict[str, Any]], Decimal]:
    """A payment that succeeds, then one or two partial refunds, or a dispute won or lost; and what
    stays paid of it."""
    stream = _payment(sid, amount, rng, now, "payment.succeeded")
    parts = [
        (amount * Decimal(rng.randint(10, 45)) / 100).quantize(Decimal("0.01"))
        for _ in range(rng.randint(1, 2))
    ]
    if refund:
        moves = [("payment.refunded", "refund", part) for part in parts if part > 0]
        kept = amount - sum((part for _, _, part in moves), Decimal(0))
    else:
        outcome = rng.choice(("dispute.won", "dispute.lost"))
        moves = [("dispute.opened", "dispute", amount), (outcome, "dispute", amount)]
        kept = amount if outcome == "dispute.won" else Decimal(0)
    dispute_id = f"dp_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}"
    for i, (kind, part, value) in enumerate(moves):
        body = copy.deepcopy(stream[-1])
        body["id"] = f"evt_{uuid.UUID(int=rng.getrandbits(128)).hex}"
        body["type"], body["created"] = kind, body["created"] + 1 + i
        move_id = dispute_id if part == "dispute" else f"re_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}"
        body["data"][part] = {"id": move_id, "amount": f"{value:.2f}"}
        stream.append(body)
    return stream, kept


def _payment(
    sid: uuid.UUID, amount: Decimal, rng: random.Random, now: int, outcome: str
) -> list[dict[str, Any]]:
    key = f"pay_{uuid.UUID(int=rng.getrandbits(128)).hex}"
    txn = f"txn_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}"
    method = rng.choice(("credit_card", "credit_card", "bank_transfer", "mobile_money"))
    types = ["payment.processing", outcome]
    return [
        {
            "id": f"evt_{uuid.UUID(int=rng.getrandbits(128)).hex}",
            "type": t,
            "created": now + i,
            "data": {
                "transaction_id": txn,
                "idempotency_key": key,
                "shipment_id": str(sid),
                "amount": f"{amount:.2f}",
                "currency": "USD",
                "payment_method": method,
                "failure_reason": "card_declined" if t == "payment.failed" else None,
            },
        }
        for i, t in enumerate(types)
    ]


def _interleave(streams: list[list[dict[str, Any]]], rng: random.Random) -> list[dict[str, Any]]:
    """All streams merged at random, each stream's own order kept."""
    slots = [i for i, s in enumerate(streams) for _ in s]
    rng.shuffle(slots)
    cursors = [0] * len(streams)
    merged = []
    for i in slots:
        merged.append(streams[i][cursors[i]])
        cursors[i] += 1
    return merged


def _disorder(bodies: list[dict[str, Any]], rng: random.Random, rate: float) -> list[dict[str, Any]]:
    """A share `rate` of the events is delivered later than it should be (up to 50 places)."""
    out = list(bodies)
    for i in range(len(out) - 1):
        if rng.random() < rate:
            j = min(len(out) - 1, i + rng.randint(1, 50))
            out.insert(j, out.pop(i))
    return out


def _duplicate(bodies: list[dict[str, Any]], rng: random.Random, rate: float) -> list[dict[str, Any]]:
    out = list(bodies)
    for body in bodies:
        if rng.random() < rate:
            out.insert(rng.randint(0, len(out)), body)
    return out


# ---- delivery --------------------------------------------------------------------------------


def post_events(
    url: str,
    provider: str,
    secrets: str | list[str],
    bodies: Iterable[dict[str, Any]],
    *,
    rate: float = 0.0,
    concurrency: int = 16,
    timeout_s: float = 30.0,
    fmt: str = "standard",
) -> PostStats:
    """Sign and POST every body to `<url>/webhooks/payments/<provider>`; `rate` events/s (0: as fast
    as the server answers, with `concurrency` requests in flight on as many keep-alive connections).
    Each body is signed just before it is sent, as the gateway of `fmt` signs. Runs an event loop of
    its own (call it from synchronous code, any thread)."""
    endpoint = Endpoint.parse(f"{url.rstrip('/')}/webhooks/payments/{provider}")
    sending = _Sending(secrets, fmt, rate, max(1, concurrency), timeout_s)
    return asyncio.run(_post_all(endpoint, list(bodies), sending))


@dataclass(frozen=True)
class _Sending:
    secrets: str | list[str]
    fmt: str
    rate: float
    concurrency: int
    timeout_s: float


async def _post_all(endpoint: Endpoint, bodies: list[dict[str, Any]], sending: _Sending) -> PostStats:
    rate, concurrency, timeout_s = sending.rate, sending.concurrency, sending.timeout_s
    stats = PostStats()
    start = time.monotonic()
    pending = iter(enumerate(bodies))  # shared by the senders (one event loop: no lock needed)

    async def sender() -> None:
        connection = Connection(endpoint)
        try:
            for index, body in pending:
                if rate > 0:
                    delay = start + index / rate - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                raw = json.dumps(body).encode()
                signed = {**headers(sending.fmt, sending.secrets, raw), "Content-Type": "application/json"}
                t0 = time.perf_counter()
                try:
                    status, answer = await asyncio.wait_for(connection.post(raw, signed), timeout_s)
                    error = None if status == 200 else f"{status}: {answer[:200].decode(errors='replace')}"
                except (OSError, TimeoutError, ProtocolError, asyncio.IncompleteReadError, ValueError) as exc:
                    status, error = 0, f"{type(exc).__name__}: {exc}"
                stats.latencies_s.append(time.perf_counter() - t0)
                stats.statuses[status] = stats.statuses.get(status, 0) + 1
                if error and len(stats.errors) < 20:
                    stats.errors.append(error)
        finally:
            connection.close()

    await asyncio.gather(*(sender() for _ in range(min(concurrency, max(1, len(bodies))))))
    stats.elapsed_s = time.monotonic() - start
    return stats


def mismatches(conn: psycopg.Connection, expected: dict[uuid.UUID, Decimal]) -> list[tuple]:
    """Shipments whose amount_paid is not what the plan says: (id, expected, actual)."""
    rows = conn.execute(
        "SELECT shipment_id, amount_paid FROM shipments WHERE shipment_id = ANY(%s)", (list(expected),)
    ).fetchall()
    actual = dict(rows)
    return [(sid, want, actual.get(sid)) for sid, want in expected.items() if actual.get(sid) != want]
