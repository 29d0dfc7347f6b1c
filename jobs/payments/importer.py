"""Catch-up import: a gateway's event export replayed through the intake's path, without signatures.

After an outage longer than a gateway's retry window, ops export the events it could not deliver
(JSON lines, one event a line, as the gateway's list-events API returns them: Stripe's Event
objects, Paystack's `{event, data}`, the Standard Webhooks body; a Stripe list page,
`{"object": "list", "data": [...]}`, counts as its events) and import them for a provider. Each line
is read by the provider's adapter like a delivery; events already received change nothing. Lines
are stored in chunks, each chunk in one transaction with its processing job and an audit row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

import config
from jobs.payments.body import EventError, decode_body
from jobs.payments.inbox import Delivery, receive_many
from jobs.payments.providers import ADAPTERS, Adapter
from jobs.payments.providers.base import gateway_type

# Lines stored per transaction.
DEFAULT_CHUNK = 500

# -- payment_import_audit -- one audit row per imported chunk (who, which provider, what came of it).
PAYMENT_IMPORT_AUDIT = """
INSERT INTO audit_log (table_name, record_id, action, performed_by, new_values, reason)
VALUES ('payment_events', %(provider)s, 'INSERT', %(by)s, %(details)s, 'import')
"""


@dataclass
class ImportReport:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    ignored: int = 0
    refused: list[tuple[int, str, str]] = field(default_factory=list)  # line number, field, why


def _events(line: bytes) -> Iterator[tuple[Any, bytes]]:
    """The events of one line (a Stripe list page holds several), each with its raw body."""
    doc = decode_body(line)
    if isinstance(doc, dict) and doc.get("object") == "list" and isinstance(doc.get("data"), list):
        for item in doc["data"]:
            yield item, json.dumps(item, separators=(",", ":")).encode()
    else:
        yield doc, line


def _deliveries(adapter: Adapter, provider: str, line: bytes) -> Iterator[Delivery]:
    for doc, raw in _events(line):
        event = adapter.parse(doc)
        yield provider, event, raw, gateway_type(doc) or event.type, adapter.name == "standard"


def import_events(
    conn: psycopg.Connection,
    provider: str,
    lines: Iterable[bytes],
    by: str,
    *,
    chunk: int = DEFAULT_CHUNK,
    source: str = "-",
) -> ImportReport:
    """Import an export's lines for `provider` (its adapter reads them); returns what came of them.
    A line the adapter refuses is reported with its number and stores nothing."""
    cfg = config.get().payments
    adapter = ADAPTERS[cfg.adapter_for(provider)]
    report = ImportReport()
    pending: list[Delivery] = []
    for number, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        report.lines += 1
        if len(line) > cfg.max_body_bytes:
            report.refused.append((number, "body", f"larger than {cfg.max_body_bytes} bytes"))
            continue
        try:  # a line's events are all read before any is kept: a refused line stores nothing
            pending += list(_deliveries(adapter, provider, line))
        except EventError as exc:
            report.refused.append((number, exc.field, exc.message))
        if len(pending) >= chunk:
            _store(conn, pending, by, report, source)
            pending = []
    if pending:
        _store(conn, pending, by, report, source)
    return report


def _store(
    conn: psycopg.Connection, deliveries: list[Delivery], by: str, report: ImportReport, source: str
) -> None:
    provider = deliveries[0][0]
    with conn.transaction():
        received = receive_many(conn, deliveries, enqueued_by=by)
        accepted = sum(not r.duplicate and not r.ignored for r in received)
        duplicates = sum(r.duplicate for r in received)
        ignored = sum(r.ignored and not r.duplicate for r in received)
        details = {"source": source, "events": len(received), "accepted": accepted,
                   "duplicates": duplicates, "ignored": ignored}  # fmt: skip
        conn.execute(PAYMENT_IMPORT_AUDIT, {"provider": provider, "by": by, "details": Jsonb(details)})
    report.accepted += accepted
    report.duplicates += duplicates
    report.ignored += ignored
