"""`skyport payments import`: a gateway's event export (JSON lines, a Stripe list page among them)
replayed through the intake's path without signatures: the amounts come out as if delivered, events
already received change nothing, a refused line is reported by number and stores nothing, and each
chunk is audited as the command's user."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

import config
from demo.gateway_formats import convert
from jobs import payments
from skyport.main import main as skyport
from tests.integration.payments_support import paid, shipment
from tests.integration.test_payment_gateways import lifecycle, settle


@pytest.fixture
def stripe_provider(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYMENT_PROVIDER_STRIPE", "stripe")
    monkeypatch.setenv("PAYMENT_WEBHOOK_SECRET_STRIPE", "whsec_import_test")
    config.get.cache_clear()


def test_an_export_imports_once_and_reports_refused_lines(
    stripe_provider, conn: psycopg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = shipment(conn, "500.00")
    events = convert(lifecycle(sid, "credit_card"), "stripe")
    customer = {"id": "evt_customer", "object": "event", "type": "customer.created", "created": 1,
                "data": {"object": {"id": "cus_1"}}}  # fmt: skip
    broken = {
        **events[1],
        "id": "evt_broken",
        "data": {"object": {**events[1]["data"]["object"], "currency": 7}},
    }
    page = {"object": "list", "data": events[3:], "has_more": False, "url": "/v1/events"}
    lines = [*events[:3], customer, broken, page, events[0]]  # the last one twice
    export = tmp_path / "events.jsonl"
    export.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")

    assert skyport(["payments", "import", "--provider", "stripe", str(export)]) == 1
    out, err = capsys.readouterr()
    assert "7 line(s): 5 event(s) accepted, 1 already received, 1 ignored, 1 line(s) refused" in out, out
    assert "line 5: data.object.currency:" in err, err
    settle(conn)
    assert paid(conn, sid) == (Decimal("150.00"), Decimal("350.00"), "partial")
    assert payments.drift(conn) == []

    again = tmp_path / "again.jsonl"
    again.write_text("\n".join(json.dumps(line) for line in events) + "\n")
    assert skyport(["payments", "import", "--provider", "stripe", str(again)]) == 0
    assert "0 event(s) accepted, 5 already received" in capsys.readouterr().out
    assert paid(conn, sid) == (Decimal("150.00"), Decimal("350.00"), "partial")
    audit = conn.execute(
        "SELECT performed_by, new_values->>'accepted', new_values->>'duplicates' FROM audit_log"
        " WHERE reason = 'import' ORDER BY audit_id"
    ).fetchall()
    assert [(by.startswith("cli:"), accepted, dups) for by, accepted, dups in audit] == [
        (True, "5", "1"),
        (True, "0", "5"),
    ]
    drains = conn.execute("SELECT enqueued_by FROM jobs WHERE actor = 'drain_payment_events'").fetchall()
    assert len(drains) == 1 and drains[0][0].startswith("cli:")  # nothing new the second time


def test_an_unknown_provider_or_file_is_a_clear_error(
    stripe_provider, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert skyport(["payments", "import", "--provider", "nope", str(tmp_path / "x")]) == 1
    assert "unknown provider 'nope'" in capsys.readouterr().err
    assert skyport(["payments", "import", "--provider", "stripe", str(tmp_path / "missing.jsonl")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_a_list_page_with_a_refused_event_stores_none_of_its_events(
    stripe_provider, conn: psycopg.Connection, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = shipment(conn, "500.00")
    good, bad = convert(lifecycle(sid, "credit_card"), "stripe")[:2]
    bad = {**bad, "data": {"object": {**bad["data"]["object"], "amount": -1}}}
    page = {"object": "list", "data": [good, bad], "has_more": False, "url": "/v1/events"}
    export = tmp_path / "page.jsonl"
    export.write_text(json.dumps(page) + "\n")
    assert skyport(["payments", "import", "--provider", "stripe", str(export)]) == 1
    assert "line 1: data.object.amount:" in capsys.readouterr().err
    assert conn.execute("SELECT count(*) FROM payment_events").fetchone()[0] == 0
