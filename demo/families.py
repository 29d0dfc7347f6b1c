"""Demo data for the job families, through their own functions: quotes expiring over the next
minutes, notifications some of whose channels fail and retry, demo shipments for the payments
simulator (its callbacks: demo/callbacks.py)."""

from __future__ import annotations

import psycopg

from demo.payments_simulator import create_demo_shipments
from jobs.notifications import enqueue_notification, wake_dispatcher

DEMO_EMAIL = "demo-customer@skyport.example"
# Quotes that expire one after another, this many seconds apart.
QUOTE_SPACING_S = 20
DEMO_QUOTES = 6
DEMO_NOTIFICATIONS = 8


def demo_customer(conn: psycopg.Connection) -> tuple[str, int, int]:
    """A demo user and two countries (created if missing): (user_id, origin, destination)."""
    user_id = conn.execute(
        """INSERT INTO users (email, password_hash, user_type, first_name, phone)
           VALUES (%s, '!', 'business', 'Demo customer', '+15550100')
           ON CONFLICT (email) DO UPDATE SET email = EXCLUDED.email RETURNING user_id""",
        (DEMO_EMAIL,),
    ).fetchone()[0]
    countries = []
    for code in ("ZZA", "ZZB"):
        countries.append(
            conn.execute(
                """INSERT INTO countries (country_code, country_name) VALUES (%s, %s)
                   ON CONFLICT (country_code) DO UPDATE SET country_name = EXCLUDED.country_name
                   RETURNING country_id""",
                (code, f"Demo {code}"),
            ).fetchone()[0]
        )
    return str(user_id), countries[0], countries[1]


def seed_quotes(conn: psycopg.Connection, run: str) -> str:
    user_id, origin, destination = demo_customer(conn)
    n = conn.execute(
        """INSERT INTO quotes (user_id, origin_country_id, destination_country_id, cargo_description,
                               quote_status, quoted_price, quoted_at, valid_until, idempotency_key)
           SELECT %s, %s, %s, 'demo cargo ' || i, 'quoted', 100 + i, LOCALTIMESTAMP,
                  LOCALTIMESTAMP + make_interval(secs => %s * i), 'demo:' || %s || ':' || i
             FROM generate_series(1, %s) AS i""",
        (user_id, origin, destination, QUOTE_SPACING_S, run, DEMO_QUOTES),
    ).rowcount
    return (
        f"{n} quotes expiring one every {QUOTE_SPACING_S}s over the next {n * QUOTE_SPACING_S // 60} minutes"
    )


def seed_notifications(conn: psycopg.Connection, run: str) -> str:
    user_id, _, _ = demo_customer(conn)
    failing = 0
    for i in range(DEMO_NOTIFICATIONS):
        channels = ["in_app", "sms"] if i % 3 == 0 else ["in_app"]  # sms is not configured: fails, retries
        failing += "sms" in channels
        enqueue_notification(
            conn,
            user_id,
            "shipment_update",
            f"Demo update {i}",
            f"Your demo shipment moved ({i})",
            f"demo:{run}:notification:{i}",
            send_via=channels,
            wake=False,
        )
    wake_dispatcher(conn)
    return f"{DEMO_NOTIFICATIONS} notifications, {failing} also by SMS (not configured: fails, retries)"


def seed_shipments(conn: psycopg.Connection, run: str) -> str:
    shipments = create_demo_shipments(conn, 5, int(run) % 1000)
    return f"{len(shipments)} unpaid demo shipments for the gateway simulator"
