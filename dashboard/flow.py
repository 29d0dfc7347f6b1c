"""Flow control in the console: the queue and actor table of the queues page, its pause, resume
and limit buttons, and the same as JSON (`GET /api/flow`, `POST /api/queues/{name}/pause|resume|limit`,
`POST /api/actors/{name}/...`). Every change needs the admin role and the CSRF token, and is written
to audit_log in the transaction that makes it (workers/flow.py does the change).
"""

from __future__ import annotations

from typing import Any

import psycopg
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dashboard import actions, inputs, queries, validate
from dashboard.openapi import ACTION_RESULT, array, described, obj
from dashboard.pages import who
from dashboard.validate import BadInput
from dashboard.web import ApiResponse, change_request, db, is_api, redirect_with
from jobs import registry
from workers import flow

VERBS = ("pause", "resume", "limit")
# Fields of each verb's body (forms add inputs.PAGE_FORM).
BODIES: dict[str, validate.Schema] = {
    "pause": {"reason": validate.Text(flow.MAX_REASON_LENGTH)},
    "resume": {},
    "limit": {"concurrency": validate.Int(1, flow.MAX_CONCURRENCY), "none": validate.Flag()},
}
NAME = validate.Text(200)


def table(conn: psycopg.Connection) -> dict[str, list[dict[str, Any]]]:
    """Per queue and per actor: waiting, running, held, limit, rate, paused (who, why, since)."""
    return flow.flow_table(conn, dict(registry.broker.actors))


def _known(scope: str) -> set[str]:
    actors = registry.broker.actors
    return set(actors) if scope == "actor" else {a.queue_name for a in actors.values()}


def change(
    conn: psycopg.Connection,
    by: str,
    ip: str | None,
    scope: str,
    name: str,
    verb: str,
    body: dict[str, Any],
) -> actions.ActionResult:
    """Pause, resume or limit a queue or actor, audited (`by`: `ops:<user>` from the console,
    `cli:<login>` from the command line); FlowError when it cannot be done."""
    known = _known(scope)
    changed = True
    with conn.transaction():
        if verb == "pause":
            flow.pause(conn, scope, name, by, body.get("reason"), known)
            message = f"{scope} {name}: paused (jobs wait; running ones finish)"
        elif verb == "resume":
            released = flow.resume(conn, scope, name, by, known)
            changed = released >= 0
            message = f"{scope} {name}: " + (
                f"resumed ({released} held jobs go out)" if changed else "was not paused"
            )
        else:
            limit = None if body.get("none") else body.get("concurrency")
            if body.get("none") and body.get("concurrency") is not None:
                raise flow.FlowError("give concurrency or none, not both", "none")
            if limit is None and not body.get("none"):
                raise flow.FlowError("give concurrency, or none to remove the limit", "concurrency")
            flow.set_limit(conn, scope, name, limit, by, known)
            message = f"{scope} {name}: " + (f"at most {limit} running" if limit else "no run-time limit")
        queries.audit_write(
            conn,
            user=by,
            ip=ip,
            verb=verb,
            table_name="flow_controls",
            record_id=f"{scope}:{name}",
            details={k: v for k, v in body.items() if k in BODIES[verb]},
        )
    return actions.ActionResult(message, [name] if changed else [], [] if changed else [name])


async def _change(request: Request, scope: str) -> actions.ActionResult:
    name = validate.path(request, "name", NAME)
    verb = request.path_params["verb"]
    if verb not in VERBS:
        raise HTTPException(404, f"unknown action {verb!r}; one of {', '.join(VERBS)}")
    schema = BODIES[verb] if is_api(request) else {**inputs.PAGE_FORM, **BODIES[verb]}
    body = await change_request(request, schema)
    try:
        actor = who(request)
        return await db(change, actor.by, actor.ip, scope, name, verb, body)
    except flow.FlowError as exc:
        if exc.field == "name":
            raise HTTPException(404, str(exc)) from None
        raise BadInput(exc.field, str(exc)) from None


# The JSON API's description of a change (dashboard/openapi.py): each verb's fields, together.
_CHANGE_BODY: validate.Schema = {name: spec for body in BODIES.values() for name, spec in body.items()}


@described(
    "per queue and per actor: waiting, running, held back, limit, rate, paused (who, why, since)",
    answer=obj(["queues", "actors"], queues=array(obj()), actors=array(obj())),
)
async def api_table(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    return ApiResponse(await db(table))


@described(
    "pause a queue (reason), resume it, or limit how many of its jobs run at once (concurrency, or none)",
    path={"name": NAME, "verb": validate.Choice(VERBS)},
    body=_CHANGE_BODY,
    answer=ACTION_RESULT,
)
async def api_queue(request: Request) -> Response:
    return ApiResponse((await _change(request, "queue")).as_dict())


@described(
    "pause an actor (reason), resume it, or limit how many of its jobs run at once (concurrency, or none)",
    path={"name": NAME, "verb": validate.Choice(VERBS)},
    body=_CHANGE_BODY,
    answer=ACTION_RESULT,
)
async def api_actor(request: Request) -> Response:
    return ApiResponse((await _change(request, "actor")).as_dict())


async def page_queue(request: Request) -> Response:
    return redirect_with(request, "/queues", (await _change(request, "queue")).message)


async def page_actor(request: Request) -> Response:
    return redirect_with(request, "/queues", (await _change(request, "actor")).message)
