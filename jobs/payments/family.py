"""The payments family: gateway callbacks processed once each (docs/families/payments.md)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg

from jobs.family import ConsoleRead, Family, Gauge, Periodic
from jobs.payments import actors, cli
from jobs.payments.inbox import problem_events, replay_event
from jobs.payments.reconcile import drift


def _problem_lines(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{len(rows)} unmatched or rejected payment event(s)"] if rows else []


def _drift_lines(rows: list[dict[str, Any]]) -> list[str]:
    return (
        [f"payment drift on {len(rows)} shipment(s) (amount_paid differs from its payments)"] if rows else []
    )


def replay_by_ops(conn: psycopg.Connection, by: str, ip: str | None, provider: str, event_id: str) -> bool:
    """Replay an unmatched or rejected event (audited by `replay_event`)."""
    return bool(replay_event(conn, provider, event_id, by, ip=ip))


def _metrics(conn: psycopg.Connection) -> Iterator[Gauge]:
    yield Gauge(
        "skyport_payment_drift_shipments",
        "Shipments whose amount_paid differs from their payments",
        {None: len(drift(conn))},
    )


FAMILY = Family(
    name="payments",
    actors=(actors,),
    commands=cli.add_commands,
    reads=(
        ConsoleRead("payment_problems", problem_events, _problem_lines),
        ConsoleRead("payment_drift", drift, _drift_lines),
    ),
    actions={"replay_payment_event": replay_by_ops},
    metrics=_metrics,
    schedule=(Periodic("payments_reconcile", "reconcile_payments", "every 5m", grace_s=120),),
)
