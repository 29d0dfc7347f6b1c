"""The webhook body's checks (jobs/payments/events.py), without a database: UTF-8 JSON only, bounded
depth (checked without recursion), storable strings, bounded numbers, strict amount and currency;
whatever the bytes, an event or an EventError naming the field, never another exception."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.payments import inbox
from jobs.payments.body import MAX_DEPTH, nesting_depth
from jobs.payments.events import (
    EventError,
    SignatureError,
    parse_event,
    sign,
    verify_signature,
)
from tests.integration.hostile_bodies import (
    TRICKY_AMOUNTS,
    TRICKY_CURRENCIES,
    dumps,
    hostile_bodies,
    json_values,
    put,
)

HYPOTHESIS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def doc(**data: Any) -> dict[str, Any]:
    body = {
        "id": "evt_1",
        "type": "payment.succeeded",
        "created": int(time.time()),
        "data": {
            "transaction_id": "txn_1",
            "idempotency_key": "key_1",
            "shipment_id": str(uuid.uuid4()),
            "amount": "125.50",
            "currency": "USD",
            "payment_method": "credit_card",
            "failure_reason": None,
        },
    }
    body["data"].update(data)
    return body


def refused(raw: bytes) -> EventError:
    with pytest.raises(EventError) as caught:
        parse_event(raw)
    return caught.value


@HYPOTHESIS
@given(st.binary(max_size=500) | hostile_bodies())
def test_any_body_gives_an_event_or_an_event_error(raw: bytes) -> None:
    try:
        event = parse_event(raw)
    except EventError as exc:
        json.dumps({"field": exc.field, "detail": exc.message}, ensure_ascii=False).encode()  # answerable
        assert exc.field and exc.message
    else:
        assert Decimal(0) < event.amount and event.amount.as_tuple().exponent == -2
        text = raw.decode("utf-8")  # what gets stored is UTF-8 ...
        assert "\x00" not in text and nesting_depth(text) <= MAX_DEPTH


@HYPOTHESIS
@given(json_values)
def test_nesting_depth_counts_what_json_nests(value: Any) -> None:
    def depth(v: Any) -> int:
        if isinstance(v, list):
            return 1 + max((depth(i) for i in v), default=0)
        if isinstance(v, dict):
            return 1 + max((depth(i) for i in v.values()), default=0)
        return 0

    assert nesting_depth(json.dumps(value)) == depth(value)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-8-sig", "latin-1"])
def test_other_encodings_are_refused(encoding: str) -> None:
    raw = json.dumps(doc(failure_reason="déjà vu"), ensure_ascii=False).encode(encoding)
    error = refused(raw)
    assert error.field == "body" and "UTF-8" in error.message


def test_depth_up_to_the_limit_is_accepted_beyond_refused_without_recursion_errors() -> None:
    deepest = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)  # under the top-level object
    assert parse_event(dumps(put(doc(), "extra", "\u2063placeholder\u2063"), deepest)).amount
    too_deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert "levels" in refused(dumps(put(doc(), "extra", "\u2063placeholder\u2063"), too_deep)).message
    for raw in (b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b"[" * 3000):
        assert refused(raw).field == "body"
    brackets_in_strings = {**doc(failure_reason='[{\\"[' * 100), "notes": ["[[[{{{" * 1000 + '\\"[']}
    assert parse_event(json.dumps(brackets_in_strings).encode()).failure_reason.startswith("[{")


@pytest.mark.parametrize(
    ("body", "field", "what"),
    [
        (json.dumps(doc(failure_reason="a\x00b")), "data.failure_reason", "NUL"),
        (json.dumps(doc(failure_reason="\ud800")), "data.failure_reason", "lone surrogate"),
        (json.dumps(doc(transaction_id="t\udc00")), "data.transaction_id", "lone surrogate"),
        (json.dumps({**doc(), "notes": [{"x": "ok"}, {"y": "\x00"}]}), "notes[1].y", "NUL"),
        (json.dumps({**doc(), "notes": {"\ud800key": 1}}), 'notes["\\ud800key"]', "lone surrogate"),
    ],
)
def test_unstorable_strings_are_refused_naming_the_field(body: str, field: str, what: str) -> None:
    error = refused(body.encode())
    assert (error.field, what in error.message) == (field, True)


def test_a_surrogate_pair_is_one_character_and_fine() -> None:
    assert parse_event(json.dumps(doc(failure_reason="\U0001f600")).encode()).failure_reason == "\U0001f600"
    assert "surrogate" not in json.dumps({"e": "\U0001f600"})  # escaped as a valid pair


@pytest.mark.parametrize(
    "literal",
    ["NaN", "Infinity", "-Infinity", "1e999", "1E41", "1e-41", "9" * 41, "9" * 5000, "0.5e-45", "0e-1001"],
)
def test_numbers_out_of_bounds_are_refused_naming_the_field(literal: str) -> None:
    raw = dumps(put(doc(), "data.extra", "\u2063placeholder\u2063"), literal)
    assert refused(raw).field == "data.extra"


@pytest.mark.parametrize("literal", ["0", "-0", "0.0", "1e40", "-1.5e-40", "9" * 40, "1e-40"])
def test_numbers_in_bounds_are_fine(literal: str) -> None:
    assert parse_event(dumps(put(doc(), "extra", "\u2063placeholder\u2063"), literal)).amount


# The tricky amounts the intake tests send too, and values of the wrong JSON type.
@pytest.mark.parametrize("amount", [*TRICKY_AMOUNTS, True, None, [], {}])
def test_strict_amounts(amount: Any) -> None:
    assert refused(json.dumps(doc(amount=amount)).encode()).field == "data.amount"


@pytest.mark.parametrize(
    ("amount", "normalized"),
    [("125.5", "125.50"), ("125", "125.00"), ("0125.50", "125.50"), (125, "125.00"), ("9999999999.99", None)],
)
def test_accepted_amounts_are_normalized(amount: Any, normalized: str | None) -> None:
    event = parse_event(json.dumps(doc(amount=amount)).encode())
    assert str(event.amount) == (normalized or str(amount))


def test_an_amount_as_a_json_number_stays_exact() -> None:
    raw = json.dumps(doc()).replace('"125.50"', "125.5").encode()
    assert str(parse_event(raw).amount) == "125.50"


@pytest.mark.parametrize(
    "currency",
    [*TRICKY_CURRENCIES, 840, None],
)
def test_strict_currencies(currency: Any) -> None:
    assert refused(json.dumps(doc(currency=currency)).encode()).field == "data.currency"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("shipment_id", "{12345678-1234-1234-1234-123456789abc}"),
        ("shipment_id", "12345678123412341234123456789abc"),
        ("shipment_id", "12345678-1234-1234-1234-12345678\u0669abc"),
        ("idempotency_key", "key\n"),
        ("transaction_id", "x" * 256),
        ("failure_reason", "x" * 1001),
        ("failure_reason", 12),
        ("payment_method", ["cash"]),
    ],
)
def test_other_fields_are_strict_too(field: str, value: Any) -> None:
    assert refused(json.dumps(doc(**{field: value})).encode()).field == f"data.{field}"


@pytest.mark.parametrize(("field", "value"), [("type", ["x"]), ("created", 10**15), ("created", 1.5)])
def test_header_fields_of_the_wrong_type(field: str, value: Any) -> None:
    assert refused(json.dumps({**doc(), field: value}).encode()).field == field


@pytest.mark.parametrize(
    "header",
    [
        "t=\u0661\u0667\u0660\u0660\u0660\u0660\u0660\u0660\u0660\u0660,v1=" + "0" * 64,  # non-ASCII digits
        "t=" + "9" * 400 + ",v1=" + "0" * 64,  # would overflow a float
        "t=1_700_000_000,v1=" + "0" * 64,
        "t={now},v1=" + "é" * 64,  # compare_digest refuses non-ASCII str
        "t={now},v1=" + "0" * 63,
    ],
)
def test_hostile_signature_headers_are_signature_errors(header: str) -> None:
    with pytest.raises(SignatureError):
        verify_signature(header.format(now=int(time.time())), b"{}", "s", 300, time.time())


def test_a_good_signature_with_spaces_and_upper_case_still_verifies() -> None:
    now = int(time.time())
    header = f"t={now}, v1={'f' * 64}, v1={sign('s', now, b'{}').upper()}"
    assert verify_signature(header, b"{}", "s", 300, time.time()) == now


def test_identifiers_are_limited_in_utf8_bytes_so_the_dedup_key_fits() -> None:
    body = doc()
    body["id"] = "\U0001f600" * 64  # 64 characters, 256 bytes: its job's dedup key would not fit
    assert refused(json.dumps(body).encode()).field == "id"
    body["id"] = "\U0001f600" * 63
    event = parse_event(json.dumps(body).encode())
    assert (
        len(inbox.dedup_key("provider-with-a-long-name-of-fifty-characters-xxxx", event.id).encode()) <= 1024
    )


@pytest.mark.parametrize(
    ("currency", "shown"), [(None, "got null"), (True, "got true"), ("eur", 'got "eur"')]
)
def test_errors_show_the_value_as_json_writes_it(currency: Any, shown: str) -> None:
    error = refused(json.dumps(doc(currency=currency)).encode())
    assert error.field == "data.currency" and shown in error.message, error.message
