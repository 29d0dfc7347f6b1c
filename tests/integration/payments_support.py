"""Helpers of the payment-webhook tests (test_payments*.py): a gateway event body, a demo shipment
with a total, its payment columns, and an event received into the inbox (and processed)."""

from __future__ import annotations

import json
import time
import uuid

import psycopg

from demo.payments_simulator import create_demo_shipments
from jobs import payments
from jobs.payments.events import parse_event


def event(
    shipment_id: uuid.UUID | str, type_: str = "payment.succeeded", amount: str = "125.50", **over
) -> dict:
    body = {
        "id": f"evt_{uuid.uuid4().hex}",
        "type": type_,
        "created": int(time.time()),
        "data": {
            "transaction_id": f"txn_{uuid.uuid4().hex[:16]}",
            "idempotency_key": f"key_{uuid.uuid4().hex}",
            "shipment_id": str(shipment_id),
            "amount": amount,
            "currency": "USD",
            "payment_method": "credit_card",
            "failure_reason": None,
        },
    }
    body.update({k: v for k, v in over.items() if k != "data"})
    body["data"].update(over.get("data", {}))
    return body


def shipment(conn: psycopg.Connection, total: str = "500.00") -> uuid.UUID:
    sid = create_demo_shipments(conn, 1)[0][0]
    conn.execute(
        "UPDATE shipments SET total_cost = %s, amount_due = %s WHERE shipment_id = %s", (total, total, sid)
    )
    return sid


def paid(conn: psycopg.Connection, sid: uuid.UUID) -> tuple:
    return conn.execute(
        "SELECT amount_paid, amount_due, payment_status FROM shipments WHERE shipment_id = %s", (sid,)
    ).fetchone()


def receive(conn: psycopg.Connection, body: dict, provider: str = "stripe") -> int:
    raw = json.dumps(body).encode()
    return payments.receive(conn, provider, parse_event(raw), raw).event_pk


def process(conn: psycopg.Connection, body: dict, **kw) -> payments.Result:
    return payments.process_event(conn, receive(conn, body), **kw)
