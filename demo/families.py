"""Demo data for the job families, through their own functions: quotes expiring over the next
minutes, notifications some of whose channels fail and retry, demo shipments for the payments
simulator (its callbacks: demo/callbacks.py)."""

from __future__ import annotations

import psycopg

from demo.payments_simulator import create_demo_shipments
from jobs.notifications import enqueue_notification, wake_dispatcher
from jobs.notifications.queue import DEFAULT_MAX_ATTEMPTS

DEMO_EMAIL = "demo-customer@skyport.example"
# Quotes that expire one after another, this many seconds apart.
QUOTE_SPACING_S = 20
DEMO_QUOTES = 6
DEMO_NOTIFICATIONS = 8
# Notifications scripted to end dead (and to be delivered when ops retry them).
DEMO_DEAD_NOTIFICATIONS = 2
# The channels the other demo notifications go by, in turn.
DEMO_CHANNELS = (["in_app", "email"], ["email", "sms"], ["in_app", "push"], ["email", "sms", "push"])


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
    """Notifications over every channel to the demo's providers (demo/providers.py): most are
    delivered (some after a random failure and a retry); DEMO_DEAD_NOTIFICATIONS are scripted to
    fail their SMS on every attempt, end dead, and are delivered when ops retry them."""
    user_id, _, _ = demo_customer(conn)
    for i in range(DEMO_NOTIFICATIONS):
        scripted = i < DEMO_DEAD_NOTIFICATIONS
        enqueue_notification(
            conn,
            user_id,
            "shipment_update",
            f"Demo update {i}",
            f"Your demo shipment moved ({i})",
            f"demo:{run}:notification:{i}",
            send_via=["in_app", "sms"] if scripted else DEMO_CHANNELS[i % len(DEMO_CHANNELS)],
            metadata={"demo_fail_times": DEFAULT_MAX_ATTEMPTS} if scripted else None,
            wake=False,
        )
    wake_dispatcher(conn)
    return (
        f"{DEMO_NOTIFICATIONS} notifications by email, SMS, push and in-app to the demo's providers; "
        f"{DEMO_DEAD_NOTIFICATIONS} fail their SMS until they are dead: retry them on /queues"
    )


def seed_shipments(conn: psycopg.Connection, run: str) -> str:
    shipments = create_demo_shipments(conn, 5, int(run) % 1000)
    return f"{len(shipments)} unpaid demo shipments for the gateway simulator"
