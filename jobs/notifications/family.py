"""The notifications family: delivery of `notification_queue` rows (docs/families/notifications.md)."""

from __future__ import annotations

from typing import Any

import psycopg

from jobs.family import ConsoleRead, Family, Periodic
from jobs.notifications import actors, cli
from jobs.notifications.queue import list_dead, retry_dead


def _dead_problems(rows: list[dict[str, Any]]) -> list[str]:
    return [f"{len(rows)} dead notification(s)"] if rows else []


def retry_by_ops(conn: psycopg.Connection, by: str, ip: str | None, queue_ids: list[int] | None) -> list[int]:
    """Retry the given dead notifications, or all of them (None); `retry_dead` writes the audit rows."""
    if queue_ids is None:
        queue_ids = [r["queue_id"] for r in list_dead(conn, limit=1000)]
    return retry_dead(conn, queue_ids, performed_by=by, ip=ip) if queue_ids else []


FAMILY = Family(
    name="notifications",
    actors=(actors,),
    commands=cli.add_commands,
    reads=(ConsoleRead("dead_notifications", list_dead, _dead_problems),),
    actions={"retry_notifications": retry_by_ops},
    schedule=(Periodic("notifications_dispatch", "dispatch_notifications", "every 10s", grace_s=10),),
)
