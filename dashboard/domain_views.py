"""How the job families' sections read on the console's domain page: a heading and a sentence per
section, the columns people need with human headings, and each value formatted by its kind
(relative times with the absolute one on hover, durations, channels as tags, statuses coloured by
what they mean). A section no view names is shown with every column, its name made readable."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from dashboard import formats

# Status words by what they mean for the person reading: good (green), warn (amber), bad (red).
MEANING = {
    "ok": "good", "fresh": "good", "succeeded": "good", "matched": "good", "processed": "good",
    "warning": "warn", "stale": "warn", "never refreshed": "warn", "unmatched": "warn", "skipped": "warn",
    "critical": "bad", "error": "bad", "rejected": "bad", "failed": "bad", "dead": "bad",
}  # fmt: skip


# Characters of an event id or shipment id shown (the whole one on hover and copied).
DOMAIN_KEY_CHARS = 14


@dataclass(frozen=True)
class Column:
    key: str
    heading: str
    # text, mono, cut, error, count, ago, date, seconds, tags, status, yesno, money, key, attempts
    kind: str = "text"


@dataclass(frozen=True)
class View:
    title: str
    about: str
    columns: tuple[Column, ...]


C = Column
VIEWS = {
    "partition_coverage": View(
        "Partitions ahead",
        "The range partitions of each partitioned table: how many intervals exist ahead of the current one.",
        (
            C("parent", "table", "mono"), C("status", "status", "status"), C("interval", "interval"),
            C("ahead", "intervals ahead", "count"), C("premake", "wanted ahead", "count"),
            C("last_covered", "covered until", "date"), C("partitions", "partitions", "count"),
            C("has_default", "default partition", "yesno"), C("message", "note", "cut"),
        ),
    ),
    "matview_staleness": View(
        "Report views",
        "Materialized views refreshed on a schedule: how old their data is and how the last refresh went.",
        (
            C("view", "view", "mono"), C("stale", "status", "status"),
            C("last_success_at", "data as of", "ago"), C("interval_s", "refreshed every", "seconds"),
            C("last_duration_s", "last refresh took", "seconds"),
            C("rows", "rows", "count"), C("last_outcome", "last refresh", "status"),
            C("last_error", "error", "error"),
        ),
    ),
    "payment_problems": View(
        "Payment events needing attention",
        "Gateway callbacks that matched no shipment or were rejected; replay one once its cause is fixed.",
        (
            C("received_at", "received", "ago"), C("provider", "provider"), C("event_id", "event", "key"),
            C("event_type", "type"), C("status", "status", "status"), C("amount", "amount", "money"),
            C("shipment_id", "shipment", "key"), C("attempts", "attempts", "count"),
            C("error", "reason", "error"),
        ),
    ),
    "payment_drift": View(
        "Payment drift",
        "Shipments whose amount paid differs from their completed payments minus refunds.",
        (
            C("tracking_number", "shipment", "mono"), C("amount_paid", "amount paid", "money"),
            C("expected", "payments add up to", "money"), C("drift", "difference", "money"),
            C("payment_status", "payment status"), C("total_cost", "total cost", "money"),
        ),
    ),
    "dead_notifications": View(
        "Dead notifications",
        "Notifications whose every attempt failed; retry them once the channel works again.",
        (
            C("queue_id", "#", "count"), C("notification_type", "type"), C("title", "title", "cut"),
            C("send_via", "channels", "tags"), C("channels_done", "delivered on", "tags"),
            C("attempts", "attempts", "attempts"), C("last_error", "last error", "error"),
            C("updated_at", "died", "ago"),
        ),
    ),
}  # fmt: skip


def view(section: str, rows: list[dict[str, Any]]) -> View:
    """The section's view; for a section no view names, every column of its rows."""
    if section in VIEWS:
        return VIEWS[section]
    keys = list(rows[0]) if rows else []
    return View(
        section.replace("_", " ").capitalize(), "", tuple(Column(k, k.replace("_", " ")) for k in keys)
    )


def status_of(column: Column, row: dict[str, Any]) -> str:
    value = row.get(column.key)
    if column.key == "stale":  # a boolean: the view's data is older than twice its interval
        return "never refreshed" if row.get("last_success_at") is None else ("stale" if value else "fresh")
    return "" if value is None else str(value)


def cell(row: dict[str, Any], column: Column) -> Markup:
    """One value of a row, formatted by its column's kind."""
    value = row.get(column.key)
    kind = column.kind
    if kind == "status":
        word = status_of(column, row)
        meaning = MEANING.get(word, "neutral")
        return Markup('<span class="badge badge-{}">{}</span>').format(meaning, word) if word else Markup("")
    if kind == "ago":
        return formats.ago(value)
    if kind == "seconds":
        return Markup(formats.duration(value))
    if kind == "tags":
        return formats.tags(value)
    if kind == "key":
        return formats.long_key(None if value is None else str(value), DOMAIN_KEY_CHARS)
    if kind == "yesno":
        return Markup(formats.yes_no(value))
    if kind == "money" and value is not None:
        return (
            Markup("{} {}").format(value, row.get("currency") or "")
            if column.key == "amount"
            else Markup(value)
        )
    if kind == "attempts" and value is not None and row.get("max_attempts"):
        return Markup("{} of {}").format(value, row["max_attempts"])
    if kind in ("cut", "error") and value:
        return Markup('<span title="{0}">{0}</span>').format(value)
    return Markup("{}").format(formats.plain(value))


def css(column: Column) -> str:
    return {
        "count": "num", "money": "num", "seconds": "num", "attempts": "num", "mono": "mono",
        "cut": "cut", "error": "err cut", "ago": "nowrap", "key": "nowrap", "date": "nowrap",
    }.get(column.kind, "")  # fmt: skip
