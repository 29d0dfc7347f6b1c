"""What one event does to its shipment's money, decided over the shipment's locked rows (no SQL
here: jobs/payments/batch.py locks, loads and writes).

A shipment's `Ledger` holds its amounts and its payment_transactions rows. The payment's own
events move its row forward only: pending -> processing -> completed | failed | cancelled (a failed
payment may still complete: a PaymentIntent is retried), and a completed payment is `refunded` once
its refunds reach its amount. Refunds and disputes are rows of
their own beside the payment (`refund`, `chargeback`), keyed by the payment's key and the refund's
or dispute's id, so that each moves money once:
- a refund takes its amount off `amount_paid` (several per payment; never more than was paid);
  Stripe's cumulative `amount_refunded` adds a row for what the total grew by;
- a dispute opened takes its amount off (a `chargeback` row, `processing`); won puts it back
  (`cancelled`), lost keeps it off (`completed`; lost for less than was disputed, the rest returns);
  a closing seen before its opening applies alone.
A refund or dispute before its payment completed (or while it is failed) waits; a late or repeated
event is `ignored`.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from jobs.payments.events import PaymentEvent

# The transaction status each payment event type moves its payment to.
TARGET_STATUS = {
    "payment.processing": "processing",
    "payment.succeeded": "completed",
    "payment.failed": "failed",
    "payment.canceled": "cancelled",
}
# Order of payment_transactions.transaction_status; a payment only moves up.
_RANK = {"pending": 0, "processing": 1, "completed": 2, "failed": 2, "cancelled": 2, "refunded": 3}
# A payment whose money counts (refunds and disputes apply to these).
_PAID = ("completed", "refunded")
# Chargeback rows whose amount is off the shipment: opened (processing) or lost (completed).
_CHARGED_BACK = ("processing", "completed")


class Outcome(StrEnum):
    APPLIED = "applied"  # the transition was applied (and the money moved, if it moves money)
    IGNORED = "ignored"  # recorded, but late or repeated: nothing changed
    WAITING = "processing"  # not yet: try again later
    UNMATCHED = "unmatched"  # no shipment / no completed payment within the window: dead
    REJECTED = "rejected"  # refused (overpayment, currency, key reused): dead, shipment untouched
    FAILED = "failed"  # processing raised: tried again later, `dead` when its attempts are used up
    DEAD = "dead"  # processing raised on every attempt: ops may replay it
    DONE_BEFORE = "done_before"  # the event was already processed: nothing to do


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    reason: str | None = None


@dataclass
class Txn:
    """A payment_transactions row (transaction_id None: new in this batch)."""

    key: str
    shipment_id: uuid.UUID
    amount: Decimal
    currency: str
    type: str
    status: str
    transaction_id: uuid.UUID | None = None
    external_id: str | None = None
    method: str | None = None
    provider: str | None = None
    response: str | None = None
    failed_reason: str | None = None


@dataclass
class Ledger:
    """A locked shipment and its payment rows, changed in memory by the events of a batch."""

    shipment_id: uuid.UUID
    total_cost: Decimal | None
    amount_paid: Decimal
    currency: str | None
    payment_status: str | None
    rows: dict[str, Txn] = field(default_factory=dict)
    # Every row the batch holds or made, by key (one dict shared by the batch's ledgers): a key of
    # another shipment's payment is refused.
    by_key: dict[str, Txn] = field(default_factory=dict)
    changed: set[str] = field(default_factory=set)
    paid_before: Decimal = Decimal(0)
    status_before: str | None = None

    @property
    def moved(self) -> bool:
        """Whether the shipment's amount or payment status changed."""
        return (self.amount_paid, self.payment_status) != (self.paid_before, self.status_before)

    def put(self, row: Txn) -> None:
        self.rows[row.key] = self.by_key[row.key] = row
        self.changed.add(row.key)


def movement_key(kind: str, payment_key: str, movement_id: str) -> str:
    """The idempotency key of a refund or chargeback row (at most 100 characters, as the column)."""
    digest = hashlib.sha256(payment_key.encode()).hexdigest()[:24]
    if len(movement_id) > 60:
        movement_id = hashlib.sha256(movement_id.encode()).hexdigest()[:40]
    return f"{kind}:{digest}:{movement_id}"


def apply_event(ledger: Ledger, event: PaymentEvent, provider: str, response: str) -> Result:
    """Decide and apply (to `ledger`, in memory) one event; nothing changes unless it applies."""
    refused = _refused(ledger, event)
    if refused is not None:
        return refused
    payment = ledger.rows.get(event.idempotency_key)
    if event.movement is None:
        return _payment(ledger, event, payment, provider, response)
    if payment is None or payment.status in ("pending", "processing", "failed"):
        state = payment.status if payment is not None else "unknown"
        return Result(
            Outcome.WAITING, f"{event.movement.kind} before its payment completed (payment is {state})"
        )
    if payment.status == "cancelled":
        return Result(
            Outcome.REJECTED, f"{event.movement.kind} of a payment that is {payment.status}: nothing was paid"
        )
    if event.movement.kind == "refund":
        return _refund(ledger, event, payment, provider, response)
    return _dispute(ledger, event, payment, provider, response)


def _refused(ledger: Ledger, event: PaymentEvent) -> Result | None:
    """Why the event cannot apply to this shipment at all (None: it can)."""
    if ledger.currency is not None and ledger.currency != event.currency:
        return Result(
            Outcome.REJECTED, f"currency {event.currency} differs from the shipment's ({ledger.currency})"
        )
    payment = ledger.rows.get(event.idempotency_key) or ledger.by_key.get(event.idempotency_key)
    if payment is not None and (
        payment.shipment_id != ledger.shipment_id
        or payment.type != "payment"
        or (event.amount is not None and payment.amount != event.amount)
    ):
        return Result(
            Outcome.REJECTED,
            f"idempotency key {event.idempotency_key!r} belongs to another payment "
            f"({payment.transaction_id}: {payment.amount} {payment.currency} "
            f"on shipment {payment.shipment_id})",
        )
    return None


def _payment(
    ledger: Ledger, event: PaymentEvent, payment: Txn | None, provider: str, response: str
) -> Result:
    target = TARGET_STATUS[event.type]
    current = payment.status if payment is not None else None
    if current is not None and not _moves_to(current, target):
        return Result(Outcome.IGNORED, f"late or repeated {event.type}: the payment is already {current}")
    assert event.amount is not None  # the contract requires it of a payment's own events
    delta = event.amount if target == "completed" else Decimal(0)
    total = ledger.total_cost
    if delta > 0 and (total is None or ledger.amount_paid + delta > total):
        return Result(
            Outcome.REJECTED,
            f"{event.amount} would bring shipment {ledger.shipment_id} to {ledger.amount_paid + delta} paid "
            f"of a total of {total if total is not None else 'NULL (no total yet)'}",
        )
    row = payment or Txn(
        event.idempotency_key, ledger.shipment_id, event.amount, event.currency, "payment", target
    )
    row.status = target
    row.external_id = event.transaction_id or row.external_id
    row.method = event.payment_method or row.method
    row.provider, row.response = provider, response
    if target == "failed":
        row.failed_reason = event.failure_reason or row.failed_reason
    ledger.put(row)
    _move(ledger, delta, target)
    return Result(Outcome.APPLIED)


def _moves_to(current: str, target: str) -> bool:
    """Whether a payment in `current` takes an event moving it to `target`. A failed payment may
    still complete or be cancelled (Stripe confirms a PaymentIntent again after
    payment_intent.payment_failed, or cancels it); completed, cancelled and refunded are final."""
    if current == "failed":
        return target in ("completed", "cancelled")
    return current not in ("completed", "cancelled", "refunded") and _RANK[target] > _RANK[current]


def _refund(ledger: Ledger, event: PaymentEvent, payment: Txn, provider: str, response: str) -> Result:
    move = event.movement
    assert move is not None
    refunded = _sum(ledger, "refund", payment.key, ("completed",))
    if move.id is None:  # a cumulative total (Stripe): the new part only
        key, amount = movement_key("refund", payment.key, f"to-{move.amount}"), move.amount - refunded
        if amount <= 0:
            return Result(Outcome.IGNORED, f"refunds of {payment.key!r} already reach {refunded}")
    else:
        key, amount = movement_key("refund", payment.key, move.id), move.amount
        if key in ledger.rows:
            return Result(Outcome.IGNORED, f"refund {move.id!r} already applied")
    taken = refunded + _sum(ledger, "chargeback", payment.key, _CHARGED_BACK)
    if taken + amount > payment.amount:
        return Result(
            Outcome.REJECTED,
            f"refund of {amount} would take {taken + amount} off a payment of {payment.amount}",
        )
    ledger.put(_row(ledger, event, key, amount, "refund", "completed", provider, response))
    if refunded + amount == payment.amount:
        payment.status = "refunded"
        ledger.changed.add(payment.key)
    _move(ledger, -amount, "refunded")
    return Result(Outcome.APPLIED)


def _dispute(ledger: Ledger, event: PaymentEvent, payment: Txn, provider: str, response: str) -> Result:
    move = event.movement
    assert move is not None and move.id is not None
    key = movement_key("chargeback", payment.key, move.id)
    row = ledger.rows.get(key)
    target = {"dispute.opened": "processing", "dispute.won": "cancelled", "dispute.lost": "completed"}[
        event.type
    ]
    if row is not None and (row.status != "processing" or target == "processing"):
        return Result(Outcome.IGNORED, f"late or repeated {event.type}: the dispute is already {row.status}")
    if row is None:
        taken = _sum(ledger, "refund", payment.key, ("completed",)) + _sum(
            ledger, "chargeback", payment.key, _CHARGED_BACK
        )
        if target != "cancelled" and taken + move.amount > payment.amount:
            return Result(
                Outcome.REJECTED,
                f"dispute of {move.amount} would take {taken + move.amount} "
                f"off a payment of {payment.amount}",
            )
        ledger.put(_row(ledger, event, key, move.amount, "chargeback", target, provider, response))
        _move(ledger, Decimal(0) if target == "cancelled" else -move.amount, "refunded")
        return Result(Outcome.APPLIED)
    # Won: the amount returns. Lost: what was lost stays off (less than was disputed when the
    # merchant accepted it in part), the rest returns.
    back = row.amount if target == "cancelled" else row.amount - min(move.amount, row.amount)
    row.status, row.provider, row.response = target, provider, response
    row.amount -= back if target == "completed" else Decimal(0)
    ledger.changed.add(key)
    _move(ledger, back, "completed")
    return Result(Outcome.APPLIED)


def _row(
    ledger: Ledger,
    event: PaymentEvent,
    key: str,
    amount: Decimal,
    kind: str,
    status: str,
    provider: str,
    response: str,
) -> Txn:
    assert event.movement is not None
    return Txn(
        key, ledger.shipment_id, amount, event.currency, kind, status,
        external_id=event.movement.id or event.transaction_id, provider=provider, response=response,
    )  # fmt: skip


def _sum(ledger: Ledger, kind: str, payment_key: str, statuses: tuple[str, ...]) -> Decimal:
    prefix = movement_key(kind, payment_key, "")
    return sum(
        (r.amount for r in ledger.rows.values() if r.key.startswith(prefix) and r.status in statuses),
        Decimal(0),
    )


def _move(ledger: Ledger, delta: Decimal, target: str) -> None:
    """Move the shipment's amount_paid by `delta` and set its payment_status after a transition."""
    ledger.amount_paid += delta
    paid, total, current = ledger.amount_paid, ledger.total_cost, ledger.payment_status
    if total is not None and total > 0 and paid >= total:
        status = "paid"
    elif paid > 0:
        status = "partial"
    elif target == "refunded" and delta != 0:
        status = "refunded"
    elif target == "failed" and current in (None, "unpaid", "pending", "failed"):
        status = "failed"
    elif current in ("paid", "partial"):
        status = "unpaid"
    else:
        status = current or "unpaid"
    ledger.payment_status = status
