"""Values as people read them on the console's pages: times with their zone, relative times with
the absolute one on hover, durations, tags, yes/no, long keys cut with the whole value on hover
and a copy button. Registered as template filters by dashboard/web.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from markupsafe import Markup

from dashboard.chart import ZONE, duration_label

# Characters of a long key shown before it is cut (the whole key is on hover and copied).
DEFAULT_KEY_CHARS = 28


def aware(value: datetime) -> datetime:
    """A time with its zone; the seed schema's columns without a zone hold the server's UTC time."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def when(value: datetime | None) -> str:
    """An absolute time in the console's zone, the zone named."""
    return f"{aware(value).astimezone(UTC):%Y-%m-%d %H:%M:%S} {ZONE}" if value else ""


def ago(value: datetime | None, now: datetime | None = None) -> Markup:
    """A relative time ("3 min ago", "in 2 h") with the absolute time on hover."""
    if value is None:
        return Markup("")
    value = aware(value)
    seconds = ((now or datetime.now(UTC)) - value).total_seconds()
    words = _relative(abs(seconds))
    text = "just now" if abs(seconds) < 5 else (f"{words} ago" if seconds > 0 else f"in {words}")
    return Markup('<time datetime="{}" title="{}">{}</time>').format(value.isoformat(), when(value), text)


def _relative(seconds: float) -> str:
    for limit, unit, div in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{seconds // div:.0f} {unit}"
    return f"{seconds / 86400:.0f} d" if seconds < 86400 * 14 else f"{seconds / 86400 / 7:.0f} wk"


def duration(value: float | timedelta | None, unit: str = "s") -> str:
    """Seconds (or a timedelta, or milliseconds with unit="ms") as 850 ms, 1.2 s, 3 min, 2.5 h."""
    if value is None:
        return ""
    if isinstance(value, timedelta):
        value, unit = value.total_seconds(), "s"
    return duration_label(float(value) * (1000 if unit == "s" else 1))


def tags(values: Any) -> Markup:
    """A list (channels, queues) as tags; a single value as one tag."""
    if values is None or values == "":
        return Markup("")
    items = values if isinstance(values, list | tuple | set) else [values]
    return Markup(" ").join(Markup('<span class="tag">{}</span>').format(v) for v in items)


def yes_no(value: Any) -> str:
    return "" if value is None else ("yes" if value else "no")


def long_key(value: str | None, chars: int = DEFAULT_KEY_CHARS) -> Markup:
    """A key cut to `chars` characters with the whole key on hover and a copy button."""
    if not value:
        return Markup("")
    shown = value if len(value) <= chars else value[: chars - 1] + "…"
    return Markup(
        '<span class="key" title="{0}">{1}</span>'
        '<button type="button" class="copy" data-copy="{0}" aria-label="copy {0}">copy</button>'
    ).format(value, shown)


def plain(value: Any) -> str:
    """Any other value without Python's spelling (None, True, ['a'])."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return yes_no(value)
    if isinstance(value, list | tuple):
        return ", ".join(plain(v) for v in value)
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, float):
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return str(value)
