"""The JSON API's OpenAPI 3.1 document (`GET /api/openapi.json`), generated from the routes that
serve it: every `/api/` route of the app is an operation; its parameters and body come from the
same validation schemas (dashboard/inputs.py) the endpoint checks requests against, named beside
the endpoint with `@described(...)`. A route without a description still appears, with its path
parameters, a free-form body and answer, and the error shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

from starlette.routing import BaseRoute, Route

from dashboard import validate
from dashboard.validate import Choice, Flag, Int, ListOf, Object, Schema, Spec, Text, When

F = TypeVar("F", bound=Callable[..., Any])
OPENAPI_VERSION = "3.1.0"
_CONVERTOR = re.compile(r"\{(\w+)(:\w+)?\}")

# Every error answer: 400 and 413 name the refused field (`field`, `detail`); 429 says when to
# try again (`retry_after_s`).
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string"},
        "field": {"type": "string"},
        "detail": {"type": "string"},
        "retry_after_s": {"type": "integer"},
    },
}
# What an action did: the ids (or names) it changed and the ones it left alone.
ACTION_RESULT = {
    "type": "object",
    "required": ["message", "changed", "skipped"],
    "properties": {
        "message": {"type": "string"},
        "changed": {"type": "array"},
        "skipped": {"type": "array"},
    },
}
TEXT_OR_NULL = {"type": ["string", "null"]}
INT_OR_NULL = {"type": ["integer", "null"]}
JOB_ROW = {
    "type": "object",
    "required": ["id", "actor", "queue", "state", "attempts", "max_attempts"],
    "properties": {
        "id": {"type": "integer"},
        "actor": {"type": "string"},
        "queue": {"type": "string"},
        "state": {"type": "string"},
        "attempts": {"type": "integer"},
        "max_attempts": {"type": "integer"},
        "dedup_key": TEXT_OR_NULL,
        "enqueued_at": {"type": "string"},
        "enqueued_by": TEXT_OR_NULL,
        "finished_at": TEXT_OR_NULL,
        "last_error": TEXT_OR_NULL,
    },
}
AUDIT_ENTRY = {
    "type": "object",
    "required": [
        "audit_id",
        "created_at",
        "performed_by",
        "verb",
        "table_name",
        "record_id",
        "ip",
        "target_url",
    ],
    "properties": {
        "audit_id": {"type": "integer"},
        "created_at": {"type": "string"},
        "performed_by": TEXT_OR_NULL,
        "verb": TEXT_OR_NULL,
        "table_name": {"type": "string"},
        "record_id": {"type": "string"},
        "ip": TEXT_OR_NULL,
        "target_url": TEXT_OR_NULL,
    },
}
USER = {
    "type": "object",
    "required": ["user", "role", "csrf_token"],
    "properties": {
        "user": {"type": "string"},
        "role": {"type": "string", "enum": ["admin", "readonly"]},
        "csrf_token": {"type": "string"},
    },
}


def obj(required: Iterable[str] = (), **properties: Any) -> dict[str, Any]:
    """A JSON object schema with these properties (others allowed)."""
    return {"type": "object", "required": list(required), "properties": properties}


def array(items: Mapping[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": dict(items)}


@dataclass(frozen=True)
class Described:
    """What the document says about one endpoint, beside its code."""

    summary: str
    query: Schema = field(default_factory=dict)
    body: Schema | None = None
    required: tuple[str, ...] = ()
    path: Mapping[str, Spec] = field(default_factory=dict)
    answer: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})
    # Without a login (the login itself).
    public: bool = False


def described(summary: str, **details: Any) -> Callable[[F], F]:
    """Attach the endpoint's description (query and body schemas, the 200 answer's JSON schema)."""

    def attach(endpoint: F) -> F:
        endpoint.__openapi__ = Described(summary, **details)  # type: ignore[attr-defined]
        return endpoint

    return attach


def spec_schema(spec: Spec) -> dict[str, Any]:
    """The JSON schema of what a validation rule accepts."""
    if isinstance(spec, Int):
        return {"type": "integer", "minimum": spec.minimum, "maximum": spec.maximum}
    if isinstance(spec, Text):
        return {"type": "string", "maxLength": spec.max_length}
    if isinstance(spec, Choice):
        return {"type": "string", "enum": list(spec.values)}
    if isinstance(spec, Flag):
        return {"type": "boolean"}
    if isinstance(spec, When):
        return {"type": "string", "description": "ISO 8601 date or date/time", "maxLength": 40}
    if isinstance(spec, ListOf):
        return {"type": "array", "items": spec_schema(spec.item), "maxItems": spec.max_items}
    if isinstance(spec, Object):
        return body_schema(spec.schema)
    return {}


def body_schema(schema: Schema, required: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON body: exactly these fields (an unknown one is refused)."""
    return {
        "type": "object",
        "properties": {name: spec_schema(spec) for name, spec in schema.items()},
        "required": list(required),
        "additionalProperties": False,
    }


def _json(schema: Mapping[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": dict(schema)}}}


def operation(route: Route, method: str, about: Described) -> dict[str, Any]:
    names = [m.group(1) for m in _CONVERTOR.finditer(route.path)]
    parameters = [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": spec_schema(about.path.get(n, validate.Text(200))),
        }
        for n in names
    ]
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": spec_schema(spec)}
        for n, spec in about.query.items()
    ]
    op: dict[str, Any] = {
        "summary": about.summary,
        "operationId": f"{method.lower()}_{route.endpoint.__name__}",
        "parameters": parameters,
        "responses": {
            "200": {"description": "done", **_json(about.answer)},
            "default": {
                "description": "an error: 4xx with the reason",
                **_json({"$ref": "#/components/schemas/Error"}),
            },
        },
    }
    if method == "POST":
        if about.body is not None:
            op["requestBody"] = {"required": False, **_json(body_schema(about.body, about.required))}
        op["parameters"].append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "the same key again changes nothing more (409)",
                "schema": spec_schema(validate.Text(200)),
            }
        )
        op["responses"]["409"] = {
            "description": "a conflict, or the same Idempotency-Key again",
            **_json({"anyOf": [{"$ref": "#/components/schemas/Error"}, ACTION_RESULT]}),
        }
    op["security"] = (
        [] if about.public else [{"session": [], "csrf": []} if method == "POST" else {"session": []}]
    )
    return op


def document(routes: Iterable[BaseRoute], session_cookie: str = "skyport_session") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every `/api/` route (`session_cookie`: the cookie's name, which
    depends on SKYPORT_SECURE_COOKIES)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/"):
            continue
        about = getattr(route.endpoint, "__openapi__", None) or Described(_first_line(route.endpoint))
        template = _CONVERTOR.sub(r"{\1}", route.path)
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            paths.setdefault(template, {})[method.lower()] = operation(route, method, about)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Skyport Jobs console API",
            "version": _version(),
            "description": "The ops console's JSON API: log in with POST /api/login, then send the session "
            "cookie, and the CSRF token as X-CSRF-Token on every POST (docs/api.md).",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": ERROR, "ActionResult": ACTION_RESULT},
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": session_cookie},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
            },
        },
    }


def _first_line(endpoint: Callable[..., Any]) -> str:
    return (endpoint.__doc__ or endpoint.__name__).strip().splitlines()[0]


def _version() -> str:
    try:
        return version("skyport-jobs")
    except PackageNotFoundError:
        return "0+unknown"
