"""Notifications: `enqueue_notification` (deduplicated, wakes the dispatcher), delivery with
retries over email/SMS/push/in-app (`dispatch_due`), dead rows for ops (`list_dead`, `retry_dead`)."""

from jobs.notifications.dispatch import Backoff, DispatchStats, dispatch_due
from jobs.notifications.queue import enqueue_notification, list_dead, retry_dead, wake_dispatcher

__all__ = [
    "Backoff",
    "DispatchStats",
    "dispatch_due",
    "enqueue_notification",
    "list_dead",
    "retry_dead",
    "wake_dispatcher",
]
