"""Tables and JSON for the command line's listings (`skyport ...` and the families' commands).

A table's columns are as wide as their widest value, up to a cap; a longer value is cut with an
ellipsis. Values are rendered for people (no `None`, lists joined, times without microseconds);
`--json` prints the rows as they are, with ISO times. A listing cut at its limit says so and how
to see more.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

ELLIPSIS = "…"
# Widest a column may grow before its values are cut (the last column is never cut below this).
DEFAULT_MAX_WIDTH = 40


@dataclass(frozen=True)
class Column:
    """One column: its header, the row's key (or a function of the row), right-aligned or not,
    and the widest it may grow."""

    header: str
    key: str | Callable[[Mapping[str, Any]], Any]
    right: bool = False
    max_width: int = DEFAULT_MAX_WIDTH

    def value(self, row: Mapping[str, Any]) -> str:
        return human(self.key(row) if callable(self.key) else row.get(self.key))


def cut(text: str, width: int) -> str:
    """`text` in at most `width` characters, cut with an ellipsis when longer."""
    text = " ".join(text.split()) if "\n" in text else text
    return text if len(text) <= width else text[: max(width - 1, 0)] + ELLIPSIS


def when(value: datetime | None) -> str:
    """In UTC, as the columns' headers say (PostgreSQL answers in the session's zone; a time
    without a zone is UTC already)."""
    if value is None:
        return "-"
    return (value.astimezone(UTC) if value.tzinfo else value).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{s}s"


def human(value: Any) -> str:
    """A value as a person reads it: '-' for nothing, yes/no, lists joined, JSON for mappings."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return when(value)
    if isinstance(value, timedelta):
        return duration(value.total_seconds())
    if isinstance(value, list | tuple | set):
        return ", ".join(human(v) for v in value) or "-"
    if isinstance(value, Mapping):
        return json.dumps(value, default=json_default, ensure_ascii=False) if value else "-"
    return str(value)


def json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=json_default, indent=2, ensure_ascii=False)


def table(columns: Sequence[Column], rows: Sequence[Mapping[str, Any]]) -> str:
    """The rows under a header line, each column as wide as its widest value (capped)."""
    cells = [[col.value(row) for col in columns] for row in rows]
    widths = []
    for i, col in enumerate(columns):
        widest = max([len(col.header), *(len(line[i]) for line in cells)])
        widths.append(min(widest, max(col.max_width, len(col.header))))
    lines = []
    for line in [[col.header for col in columns], *cells]:
        parts = []
        for i, (col, text) in enumerate(zip(columns, line, strict=True)):
            text = cut(text, widths[i])
            last = i == len(columns) - 1
            parts.append(text.rjust(widths[i]) if col.right else text if last else text.ljust(widths[i]))
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def add_listing_flags(
    cmd: argparse.ArgumentParser, *, limit: int | None = None, before: bool = False
) -> None:
    """--json, and for long listings --limit (and --before: the keyset of the next page)."""
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    if limit is not None:
        cmd.add_argument(
            "--limit", type=positive_int, default=limit, help="at most this many rows (default: %(default)s)"
        )
    if before:
        cmd.add_argument(
            "--before", type=positive_int, help="only rows older than this id (the next page's start)"
        )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def show(
    args: argparse.Namespace,
    columns: Sequence[Column],
    rows: Sequence[Mapping[str, Any]],
    *,
    empty: str,
    total: int | None = None,
    next_before: Any = None,
) -> None:
    """Print a listing: JSON with --json, else the table (or `empty`); when the rows are cut at
    the limit, "showing N of TOTAL" with the flags that show more, on stderr (a pipe gets only the
    table or the JSON)."""
    if getattr(args, "json", False):
        print(dumps(list(rows)))
    else:
        print(table(columns, rows) if rows else empty)
    limit = getattr(args, "limit", None)
    if limit is not None and rows and len(rows) >= limit and (total is None or total > len(rows)):
        of = f" of {total}" if total is not None else ""
        more = f"--limit N, or --before {next_before} for the next page" if next_before else "--limit N"
        print(f"showing {len(rows)}{of}; for more: {more}", file=sys.stderr)
