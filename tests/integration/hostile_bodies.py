"""Hypothesis strategies of hostile payment-webhook bodies, as raw bytes (the tests sign them
correctly): other encodings, deep nesting, huge or non-finite numbers, NUL, lone surrogates, wrong
types per field, long strings, tricky amounts and currencies, random bytes, and valid events (with
bounded extras) now and then. Used by tests/unit/test_payment_body.py and
tests/integration/test_webhook_hostile.py."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from hypothesis import strategies as st

FIELDS = ("id", "type", "created", "data")
DATA_FIELDS = (
    "transaction_id",
    "idempotency_key",
    "shipment_id",
    "amount",
    "currency",
    "payment_method",
    "failure_reason",
)
# Where a hostile value goes: a field of the contract, or a member the contract does not know.
PLACES = (*FIELDS, *(f"data.{f}" for f in DATA_FIELDS), "extra", "data.extra")
ENCODINGS = ("utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-8-sig", "latin-1", "cp1252")
TRICKY_AMOUNTS = (
    "125.50\n",
    "\n125.50",
    " 125",
    "125 ",
    "\u0661\u0662\u0665",
    "\u0661\u0662\u0665.\u0665\u0660",
    "\uff11\uff12\uff15",
    "125.",
    ".5",
    "+1",
    "-1",
    "0",
    "0.00",
    "1e2",
    "1E2",
    "0x10",
    "1_000",
    "125.505",
    "12345678901",
    "99999999999.99",
    "NaN",
    "Infinity",
    "",
)
TRICKY_CURRENCIES = (
    "USD\n",
    "usd",
    "Usd",
    "\uff35\uff33\uff24",
    "ÜSD",
    "US",
    "USDD",
    " USD",
    "US\x00",
    "U\u0301SD",
    "",
)
NUMBER_LITERALS = ("NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "1E41", "1e-41", "-0", "0.0")

PLACEHOLDER = "\u2063placeholder\u2063"


def document(event_id: uuid.UUID, shipment_id: uuid.UUID, key: uuid.UUID) -> dict[str, Any]:
    return {
        "id": f"evt_{event_id.hex}",
        "type": "payment.succeeded",
        "created": int(time.time()),
        "data": {
            "transaction_id": f"txn_{key.hex[:16]}",
            "idempotency_key": f"key_{key.hex}",
            "shipment_id": str(shipment_id),
            "amount": "125.50",
            "currency": "USD",
            "payment_method": "credit_card",
            "failure_reason": None,
        },
    }


documents = st.builds(document, st.uuids(), st.uuids(), st.uuids())


def put(doc: dict[str, Any], place: str, value: Any) -> dict[str, Any]:
    """A copy of doc with value at place ("amount", "data.amount", "data.extra", ...)."""
    copy = {**doc, "data": dict(doc["data"])}
    if place.startswith("data."):
        copy["data"][place.removeprefix("data.")] = value
    else:
        copy[place] = value
    return copy


def dumps(doc: Any, raw: str | None = None, *, ascii_only: bool = True) -> bytes:
    """UTF-8 JSON of doc, with the placeholder string replaced by raw JSON text (when given);
    lone surrogates, when not escaped, are encoded as the invalid UTF-8 they would be."""
    text = json.dumps(doc, ensure_ascii=ascii_only)
    if raw is not None:
        text = text.replace(json.dumps(PLACEHOLDER, ensure_ascii=ascii_only), raw)
    return text.encode("utf-8", "surrogatepass")


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**50), max_value=10**50)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Strings PostgreSQL refuses (NUL, lone surrogates), with ordinary characters around them.
unstorable = st.builds(
    lambda before, bad, after: before + bad + after,
    st.text(max_size=5),
    st.sampled_from(["\x00", "\ud800", "\udfff", "\udc00\ud800", "\ud83d"]),
    st.text(max_size=5),
)


@st.composite
def encoded(draw: st.DrawFn) -> bytes:
    doc = put(draw(documents), "data.failure_reason", draw(st.sampled_from(["déjà vu", "ok", "日本"])))
    return json.dumps(doc, ensure_ascii=False).encode(draw(st.sampled_from(ENCODINGS)), "replace")


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=1500))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"k":', "}")]))
    inner = draw(st.sampled_from(["1", '"x"', "[]", "{}", "null"]))
    text = opening * depth + inner + closing * depth
    if draw(st.booleans()):
        return text.encode()  # the whole body
    return dumps(put(draw(documents), draw(st.sampled_from(PLACES)), PLACEHOLDER), text)


@st.composite
def huge_number(draw: st.DrawFn) -> bytes:
    literal = draw(
        st.sampled_from(NUMBER_LITERALS)
        | st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n)
        | st.builds(lambda m, e: f"{m}e{e}", st.integers(-9, 9), st.integers(-(10**6), 10**6))
        | st.floats(allow_nan=True, allow_infinity=True).map(json.dumps)
    )
    return dumps(put(draw(documents), draw(st.sampled_from(PLACES)), PLACEHOLDER), literal)


@st.composite
def unstorable_string(draw: st.DrawFn) -> bytes:
    bad = draw(unstorable)
    doc = draw(documents)
    if draw(st.booleans()):
        doc = put(doc, draw(st.sampled_from(PLACES)), bad)
    else:  # as a member's name
        doc = put(doc, draw(st.sampled_from(["extra", "data.extra"])), {bad: 1})
    return dumps(doc, ascii_only=draw(st.booleans()))


@st.composite
def wrong_type(draw: st.DrawFn) -> bytes:
    return dumps(put(draw(documents), draw(st.sampled_from(PLACES)), draw(json_values)))


@st.composite
def long_string(draw: st.DrawFn) -> bytes:
    size = draw(st.sampled_from([101, 256, 1001, 4096, 70_000]))
    char = draw(st.sampled_from(["x", "é", " ", "\n", "\U0001d7d8"]))
    return dumps(put(draw(documents), draw(st.sampled_from(PLACES)), char * size), ascii_only=False)


@st.composite
def tricky_format(draw: st.DrawFn) -> bytes:
    place, value = draw(
        st.tuples(st.just("data.amount"), st.sampled_from(TRICKY_AMOUNTS))
        | st.tuples(st.just("data.currency"), st.sampled_from(TRICKY_CURRENCIES))
    )
    return dumps(put(draw(documents), place, value), ascii_only=draw(st.booleans()))


@st.composite
def bounded_extras(draw: st.DrawFn) -> bytes:
    """Valid events with members the contract does not know (which the intake keeps)."""
    return dumps(put(draw(documents), draw(st.sampled_from(["extra", "data.extra"])), draw(json_values)))


def hostile_bodies() -> st.SearchStrategy[bytes]:
    return st.one_of(
        encoded(),
        nested(),
        huge_number(),
        unstorable_string(),
        wrong_type(),
        long_string(),
        tricky_format(),
        bounded_extras(),
        documents.map(dumps),
        st.binary(max_size=300),
    )
