"""A webhook body, before any gateway's contract: strict UTF-8 JSON that PostgreSQL's jsonb stores as
it is. No byte order mark or other encoding, nested at most MAX_DEPTH levels (counted before
parsing, without recursion), no NUL or lone surrogate in any string or member name, bounded
numbers. Anything else is an EventError naming the field.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# The deepest nesting of objects and arrays a body may have (the contracts need at most 4).
MAX_DEPTH = 32
# The longest number literal, and the largest power of ten (either sign) of a number's magnitude
# (PostgreSQL's numeric, which jsonb stores numbers as, refuses exponents beyond 1000).
MAX_NUMBER_CHARS = 40
MAX_NUMBER_EXPONENT = 40

# What the nesting scan looks at: string delimiters, escapes, brackets.
_STRUCTURE = re.compile(r'["\\\[\]{}]')
# What PostgreSQL's jsonb and text refuse in a string: NUL, and surrogates (only lone ones survive
# json.loads: a valid pair decodes to one character).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)


class EventError(ValueError):
    """The body does not match the contract; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class _Unbounded:
    """A number out of bounds, kept by the parser until the walk names its field."""

    literal: str


def show(value: Any, limit: int = 40) -> str:
    """A short, printable, ASCII rendering of a value for an error message, in JSON's notation
    (the sender's: null, true, "text"), not Python's."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError):  # not from JSON (a Decimal, bytes): Python's notation
        text = ascii(value)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _utf8_text(body: bytes) -> str:
    if body.startswith(codecs.BOM_UTF8):
        raise EventError("body", "a byte order mark is not allowed: send UTF-8 JSON without one")
    if b"\x00" in body:
        raise EventError("body", "NUL bytes (UTF-16 or UTF-32?): the body must be UTF-8 JSON")
    try:
        return body.decode("utf-8")  # strict: json.loads(bytes) would guess UTF-16 or UTF-32 too
    except UnicodeDecodeError as exc:
        raise EventError(
            "body", f"not UTF-8 at byte {exc.start} ({exc.reason}): UTF-8 JSON is required"
        ) from None


def nesting_depth(text: str, limit: int = MAX_DEPTH) -> int:
    """How deep the arrays and objects of a JSON text nest (brackets in strings do not count), in
    one pass without recursion; stops counting past `limit` (returns limit + 1)."""
    depth = deepest = 0
    in_string = False
    escaped = -1  # the position of the character a backslash escapes
    for match in _STRUCTURE.finditer(text):
        position, char = match.start(), match.group()
        if position == escaped:
            continue
        if in_string:
            if char == "\\":
                escaped = position + 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def _int(literal: str) -> int | _Unbounded:
    if len(literal) > MAX_NUMBER_CHARS or not literal.isascii():
        return _Unbounded(literal)
    return int(literal)


def _decimal(literal: str) -> Decimal | _Unbounded:
    if len(literal) > MAX_NUMBER_CHARS or not literal.isascii():
        return _Unbounded(literal)
    value = Decimal(literal)  # 125.50 as a JSON number stays exact
    if abs(value.adjusted()) > MAX_NUMBER_EXPONENT:  # 0e-1001 too: numeric refuses the exponent
        return _Unbounded(literal)
    return value


def _field(path: str, key: str) -> str:
    """The name of a member in errors: data.amount, or data["odd key"] (ASCII, escapes shown)."""
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key[:64])}]"


def _check_storable(value: Any, path: str) -> None:
    """Every string (keys too) storable by PostgreSQL, every number in bounds; EventError naming
    the field otherwise. Recursive, but the depth was checked first."""
    if isinstance(value, str):
        bad = _UNSTORABLE.search(value)
        if bad is not None:
            what = "a NUL character" if bad.group() == "\x00" else "a lone surrogate"
            raise EventError(path or "body", f"{what} ({show(bad.group())}) at character {bad.start()}")
    elif isinstance(value, _Unbounded):
        raise EventError(
            path or "body",
            f"{show(value.literal)} is not a bounded JSON number (at most {MAX_NUMBER_CHARS} "
            f"characters, magnitude from 1e-{MAX_NUMBER_EXPONENT} to 1e{MAX_NUMBER_EXPONENT}, or 0)",
        )
    elif isinstance(value, dict):
        for key, item in value.items():
            field = _field(path, key)
            _check_storable(key, field)
            _check_storable(item, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_storable(item, f"{path or 'body'}[{index}]")


def _constant(literal: str) -> _Unbounded:
    return _Unbounded(literal)  # NaN, Infinity, -Infinity: not JSON (and not numeric in jsonb)


def decode_body(body: bytes) -> Any:
    """The JSON document of a raw body, or EventError: the body must be UTF-8 JSON nested at most
    MAX_DEPTH levels, with storable strings and bounded numbers."""
    text = _utf8_text(body)
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise EventError("body", f"nested more than {MAX_DEPTH} levels deep")
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_decimal, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise EventError("body", f"not JSON ({exc})") from None
    except RecursionError:  # pragma: no cover - the depth was checked first
        raise EventError("body", f"nested more than {MAX_DEPTH} levels deep") from None
    _check_storable(doc, "")
    return doc
