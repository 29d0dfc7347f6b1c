"""Rows of the business schema inserted directly (a user, a country, a freight service), for the
schema, seed-function and quote tests."""

from __future__ import annotations

import itertools
import uuid
from decimal import Decimal

import psycopg

_COUNTRY_CODES = itertools.count(1)


def make_user(conn: psycopg.Connection) -> uuid.UUID:
    return conn.execute(
        "INSERT INTO users (email, password_hash, user_type) VALUES (%s, 'x', 'business') RETURNING user_id",
        (f"{uuid.uuid4().hex}@example.com",),
    ).fetchone()[0]


def make_country(conn: psycopg.Connection, *, active: bool = True) -> int:
    code = f"{next(_COUNTRY_CODES):03d}"  # unique within a run, 3 characters
    return conn.execute(
        "INSERT INTO countries (country_code, country_name, is_active) VALUES (%s, %s, %s)"
        " RETURNING country_id",
        (code, f"Country {code}", active),
    ).fetchone()[0]


def make_service(
    conn: psycopg.Connection,
    *,
    max_kg: Decimal | None = Decimal("1000"),
    max_m3: Decimal | None = Decimal("100"),
) -> int:
    return conn.execute(
        "INSERT INTO freight_services"
        " (service_name, service_type, max_daily_capacity_kg, max_daily_capacity_m3)"
        " VALUES ('Sea economy', 'sea', %s, %s) RETURNING service_id",
        (max_kg, max_m3),
    ).fetchone()[0]
