"""The console's one validation layer: every query parameter, form field, JSON body and path
parameter of the pages and the JSON API goes through here before anything reads the database.

An endpoint names its fields in a `Schema` (field name -> `Spec`); `query`, `form`, `json_body` and
`path` return the typed values or raise `BadInput(field, detail)`, which the app answers with 400
`{"error", "field", "detail"}` (the pages: a 400 page naming the field). The rules:

- text is a string without NUL (PostgreSQL refuses it) or lone surrogates (not UTF-8), within a
  length;
- numbers are ASCII digits only (`str.isdigit()` also accepts '²' and '٣'), within a range: ids
  1 .. 2**63 - 1 (bigint), limits 1 .. the endpoint's maximum; JSON numbers must be integers
  (not booleans, not 1.0);
- an unknown parameter or field, or a parameter given twice, is refused rather than ignored;
- an empty value (``?state=``, ``""``, ``null``) means the field is absent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request

# The largest PostgreSQL bigint: ids and keyset cursors.
MAX_BIGINT = 2**63 - 1
# The largest JSON body or form the console reads (its requests are a few hundred bytes).
MAX_BODY_BYTES = 256 * 1024
# Characters of a refused value quoted back in an error message.
QUOTED_CHARS = 40

_INTEGER = re.compile(r"-?[0-9]{1,20}\Z")  # ASCII digits; \Z: no trailing newline (unlike $)
_ISO_CHARS = re.compile(r"[0-9T:. +\-Z]{4,40}\Z", re.IGNORECASE)
_TRUE, _FALSE = ("1", "true", "on", "yes"), ("0", "false", "off", "no")


class BadInput(ValueError):
    """A request value the console refuses: 400 (413 for a body too large) naming the field."""

    def __init__(self, field: str, detail: str, status: int = 400) -> None:
        self.field = printable(field)[:100]
        self.detail = detail
        self.status = status
        super().__init__(f"{self.field}: {detail}")

    def as_dict(self) -> dict[str, str]:
        return {"error": f"invalid {self.field}: {self.detail}", "field": self.field, "detail": self.detail}


def printable(text: str) -> str:
    """`text` safe to echo (UTF-8 encodable: a lone surrogate becomes '\\udXXX')."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def quoted(value: Any) -> str:
    """A short, printable rendering of a refused value."""
    text = repr(value)
    return printable(text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 3] + "...")


class Spec:
    """One field's rule: `parse(field, value)` returns the typed value or raises BadInput."""

    # Takes repeated query/form values (a list).
    many = False

    def parse(self, field: str, value: Any) -> Any:
        raise NotImplementedError


Schema = Mapping[str, Spec]


@dataclass(frozen=True)
class Int(Spec):
    """A whole number within [minimum, maximum]: a JSON integer or ASCII digits."""

    minimum: int = 1
    maximum: int = MAX_BIGINT

    def parse(self, field: str, value: Any) -> int:
        if isinstance(value, str) and _INTEGER.match(value.strip()):
            number = int(value.strip())
        elif isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            raise BadInput(field, f"must be a whole number (ASCII digits), got {quoted(value)}")
        if not self.minimum <= number <= self.maximum:
            raise BadInput(field, f"must be from {self.minimum} to {self.maximum}, got {quoted(value)}")
        return number


ID = Int(1, MAX_BIGINT)


@dataclass(frozen=True)
class Text(Spec):
    """A string of 1..max_length characters, without NUL or lone surrogates."""

    max_length: int
    strip: bool = True

    def parse(self, field: str, value: Any) -> str:
        if not isinstance(value, str):
            raise BadInput(field, f"must be text, got {type(value).__name__}")
        text = value.strip() if self.strip else value
        if "\x00" in text:
            raise BadInput(field, "must not contain NUL characters")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(field, "must be valid Unicode (no lone surrogates)") from None
        if len(text) > self.max_length:
            raise BadInput(field, f"must be at most {self.max_length} characters, got {len(text)}")
        return text


@dataclass(frozen=True)
class Choice(Spec):
    values: tuple[str, ...]

    def parse(self, field: str, value: Any) -> str:
        if isinstance(value, str) and value.strip() in self.values:
            return value.strip()
        raise BadInput(field, f"must be one of {', '.join(self.values)}; got {quoted(value)}")


@dataclass(frozen=True)
class Flag(Spec):
    """A JSON boolean, or 1/0, true/false, on/off, yes/no (forms)."""

    def parse(self, field: str, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise BadInput(field, f"must be true or false, got {quoted(value)}")


@dataclass(frozen=True)
class When(Spec):
    """An ISO 8601 date or date/time; without a zone, the server's zone (as typed into the form)."""

    def parse(self, field: str, value: Any) -> datetime:
        text = value.strip() if isinstance(value, str) else None
        try:
            if text is None or not _ISO_CHARS.match(text):
                raise ValueError
            moment = datetime.fromisoformat(text)
            return moment if moment.tzinfo else moment.astimezone()
        except (ValueError, OverflowError, OSError):
            raise BadInput(field, f"must be an ISO 8601 date/time, got {quoted(value)}") from None


@dataclass(frozen=True)
class ListOf(Spec):
    """Up to max_items values, each checked by `item` (a JSON list, or a repeated form field)."""

    item: Spec
    max_items: int
    many = True

    def parse(self, field: str, value: Any) -> list[Any]:
        values = value if isinstance(value, list) else [value]
        if len(values) > self.max_items:
            raise BadInput(field, f"must have at most {self.max_items} items, got {len(values)}")
        return [self.item.parse(f"{field}[{i}]", v) for i, v in enumerate(values) if not _empty(v)]


@dataclass(frozen=True)
class Object(Spec):
    """A JSON object whose fields follow `schema`."""

    schema: Schema

    def parse(self, field: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise BadInput(field, f"must be a JSON object, got {type(value).__name__}")
        return fields(value.items(), self.schema, prefix=f"{field}.")


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def fields(
    items: Iterable[tuple[str, Any]], schema: Schema, *, prefix: str = "", required: Iterable[str] = ()
) -> dict[str, Any]:
    """Check (name, value) pairs against `schema`: the typed values of the fields present."""
    raw: dict[str, Any] = {}
    for name, value in items:
        spec = schema.get(name) if isinstance(name, str) else None
        if spec is None:
            expected = ", ".join(schema) or "none"
            raise BadInput(f"{prefix}{name}", f"unknown field; expected: {expected}")
        if name in raw:
            if not spec.many:
                raise BadInput(f"{prefix}{name}", "given more than once")
            raw[name] = [*raw[name], value] if isinstance(raw[name], list) else [raw[name], value]
        else:
            raw[name] = value
    values = {name: schema[name].parse(f"{prefix}{name}", v) for name, v in raw.items() if not _empty(v)}
    for name in required:
        if _empty(values.get(name)):
            raise BadInput(f"{prefix}{name}", "required")
    return values


def query(request: Request, schema: Schema) -> dict[str, Any]:
    """The request's query parameters, checked."""
    return fields(request.query_params.multi_items(), schema)


def path(request: Request, name: str, spec: Spec) -> Any:
    """One path parameter, checked."""
    return spec.parse(name, request.path_params[name])


async def raw_form(request: Request) -> FormData:
    """A posted form, not yet checked field by field (`fields` does: an uploaded file is no text)."""
    await _read_capped(request)  # Starlette parses the form from the body read here
    return await request.form()


async def form(request: Request, schema: Schema, *, required: Iterable[str] = ()) -> dict[str, Any]:
    """A posted form, checked."""
    return fields((await raw_form(request)).multi_items(), schema, required=required)


async def raw_json(request: Request) -> dict[str, Any]:
    """The JSON object in the body (an empty body is {}), not yet checked field by field."""
    body = await _read_capped(request)
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: [[[[...]]]] nested too deep
        raise BadInput("body", "must be JSON") from None
    if not isinstance(value, dict):
        raise BadInput("body", f"must be a JSON object, got {type(value).__name__}")
    return value


async def json_body(request: Request, schema: Schema, *, required: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON object in the body, checked."""
    return fields((await raw_json(request)).items(), schema, required=required)


async def _read_capped(request: Request) -> bytes:
    """The body, refused with 413 past MAX_BODY_BYTES whether it declares its length or is sent in
    chunks; kept on the request (Starlette's `body()` and `form()` read it from there)."""
    _check_length(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise BadInput("body", f"larger than {MAX_BODY_BYTES} bytes", status=413)
    request._body = bytes(body)  # Starlette's own cache of the body it streamed
    return request._body


def _check_length(request: Request) -> None:
    declared = request.headers.get("content-length", "")
    if declared and (not declared.isascii() or not declared.isdecimal()):
        raise BadInput("Content-Length", "must be a number of bytes")
    if declared and int(declared) > MAX_BODY_BYTES:
        raise BadInput("body", f"larger than {MAX_BODY_BYTES} bytes", status=413)
