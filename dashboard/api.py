"""The JSON API behind the same login (for scripts): the same data and actions as the pages.

Log in with `POST /api/login {"username", "password"}` (sets the session cookie, returns the CSRF
token); send that token as `X-CSRF-Token` on every POST. Every parameter and body is checked by
dashboard/validate.py against dashboard/inputs.py: a refused value is 400
`{"error", "field", "detail"}`.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

import config
from dashboard import actions, auth, data, failures, inputs, openapi, queries, sessions, validate, web
from dashboard import login as login_flow
from dashboard.openapi import ACTION_RESULT, AUDIT_ENTRY, INT_OR_NULL, JOB_ROW, USER, array, described, obj
from dashboard.pages import domain_body, job_verb, periodic_verb, sign_out_target, who
from dashboard.validate import BadInput, Choice
from dashboard.web import ApiResponse, change_request, db
from workers.ledger import DedupKeyTaken


@described(
    "log in: sets the session cookie, returns the CSRF token",
    body=inputs.LOGIN_API,
    required=inputs.LOGIN_REQUIRED,
    answer=USER,
    public=True,
)
async def login(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    body = await validate.json_body(request, inputs.LOGIN_API, required=inputs.LOGIN_REQUIRED)
    try:
        user = await login_flow.log_in(request, body["username"], body["password"])
    except login_flow.LoginRefused as refused:
        content = {"error": refused.message}
        if refused.retry_after_s:
            content["retry_after_s"] = refused.retry_after_s
        return ApiResponse(content, status_code=refused.status, headers=refused.headers)
    return ApiResponse({"user": user.name, "role": user.role, "csrf_token": auth.csrf_token(request)})


@described("end this session (every copy of its cookie)", answer=obj(["message"], message={"type": "string"}))
async def logout(request: Request) -> Response:
    """End this session (every copy of its cookie); needs the CSRF token like every POST."""
    if not auth.csrf_ok(request, request.headers.get("x-csrf-token")):
        raise HTTPException(403, "missing or wrong CSRF token")
    await login_flow.log_out(request)
    return ApiResponse({"message": "logged out"})


@described("who is logged in, with the CSRF token", answer=USER)
async def me(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    user = request.state.user
    return ApiResponse({"user": user.name, "role": user.role, "csrf_token": auth.csrf_token(request)})


@described(
    "counts per state, the range's activity (`stats`: attempts, wait and run p50/p95, queue depth per "
    "bucket, and per queue and actor), workers, queues, schedule and warnings",
    query=inputs.OVERVIEW_PAGE,
    answer=obj(
        ["counts", "stats", "warnings"],
        counts={"type": "object"},
        stats=obj(),
        warnings=array({"type": "string"}),
    ),
)
async def overview(request: Request) -> Response:
    values = validate.query(request, inputs.OVERVIEW_PAGE)
    return ApiResponse(
        await db(data.overview, values.get("range", "1h"), values.get("queue"), values.get("actor"))
    )


@described(
    "dead jobs grouped by error (digits folded): count, first and last seen, actors, queues",
    answer=obj(["groups"], groups=array(obj(["error_group", "jobs", "first_seen", "last_seen"]))),
)
async def failures_list(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    return ApiResponse({"groups": await db(failures.groups)})


@described(
    "retry every dead job of one group of /api/failures", body=inputs.FAILURES_RETRY, answer=ACTION_RESULT
)
async def failures_retry(request: Request) -> Response:
    body = await change_request(request, inputs.FAILURES_RETRY, required=("error_group",))
    result = await db(failures.retry_group, who(request), body["error_group"])
    return ApiResponse(result.as_dict())


@described(
    "one page of jobs, newest first; `next_before` starts the next page",
    query=inputs.JOBS_API,
    answer=obj(["jobs", "next_before", "filter"], jobs=array(JOB_ROW), next_before=INT_OR_NULL, filter=obj()),
)
async def jobs(request: Request) -> Response:
    values = validate.query(request, inputs.JOBS_API)
    flt = inputs.job_filter(values)
    limit = values.get("limit", queries.DEFAULT_PAGE_SIZE)
    rows, next_id = await db(queries.jobs_page, flt, values.get("before"), limit)
    return ApiResponse({"jobs": rows, "next_before": next_id, "filter": flt.to_params()})


@described(
    "a job, its attempts (`history`), its ops actions (`audit`) and related rows",
    path={"job_id": validate.ID},
    answer={**JOB_ROW, "required": [*JOB_ROW["required"], "history", "audit", "related"]},
)
async def job(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    job_id = validate.path(request, "job_id", validate.ID)
    detail = await db(data.job_detail, job_id)
    if detail is None:
        raise HTTPException(404, f"no job {job_id}")
    return ApiResponse(detail)


@described(
    "retry, cancel or delete one job",
    path={"job_id": validate.ID, "verb": Choice(inputs.JOB_VERBS)},
    body={},
    answer=ACTION_RESULT,
)
async def job_action(request: Request) -> Response:
    job_id = validate.path(request, "job_id", validate.ID)
    await change_request(request, {})
    return await _act(request, request.path_params["verb"], [job_id])


@described(
    "retry, cancel or delete the jobs `ids`, or retry every dead job matching `filter`",
    path={"verb": Choice(inputs.JOB_VERBS)},
    body=inputs.JOBS_BULK_API,
    answer=ACTION_RESULT,
)
async def jobs_bulk(request: Request) -> Response:
    """POST /api/jobs/{verb} with {"ids": [...]}, or /api/jobs/retry with {"filter": {...}}: every dead
    job matching the filter."""
    body = await change_request(request, inputs.JOBS_BULK_API)
    verb = request.path_params["verb"]
    if "filter" in body and "ids" in body:
        raise BadInput("filter", "send ids or a filter, not both")
    if "filter" in body:
        if verb != "retry":
            raise BadInput("filter", "only retry acts on a whole filter")
        result = await db(actions.retry_dead_matching, who(request), inputs.job_filter(body["filter"]))
        return ApiResponse(result.as_dict())
    return await _act(request, verb, sorted(set(body.get("ids", []))))


async def _act(request: Request, verb: str, ids: list[int]) -> Response:
    fn = job_verb(verb)
    try:
        result = await db(fn, who(request), ids)
    except DedupKeyTaken as exc:
        return ApiResponse({"error": str(exc)}, status_code=409)
    return ApiResponse(result.as_dict())


@described(
    "every schedule entry: trigger, on/off, next fire, last run and its outcome",
    answer=obj(["entries"], entries=array(obj(["name", "actor", "trigger", "enabled", "last"]))),
)
async def periodic(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    return ApiResponse({"entries": await db(data.periodic)})


@described(
    "run a schedule entry now, or switch it on or off (persisted)",
    path={"name": inputs.PERIODIC_NAME, "verb": Choice(("run", "enable", "disable"))},
    body={},
    answer=ACTION_RESULT,
)
async def periodic_action(request: Request) -> Response:
    return ApiResponse((await periodic_verb(request)).as_dict())


@described("the job families' sections: partitions, views, payments, dead notifications")
async def domain_queues(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    return ApiResponse(await db(data.domain.read_all))


@described(
    "the audit log, newest first: people's actions (kind=ops, the default), the system's, or all",
    query=inputs.AUDIT_API,
    answer=obj(["entries", "kind"], entries=array(AUDIT_ENTRY), kind={"enum": list(queries.AUDIT_KINDS)}),
)
async def audit(request: Request) -> Response:
    values = validate.query(request, inputs.AUDIT_API)
    limit = values.get("limit", inputs.AUDIT_PAGE_SIZE)
    kind = values.get("kind", inputs.DEFAULT_AUDIT_KIND)
    rows = await db(data.audit_entries, kind, limit, values.get("before"))
    return ApiResponse({"entries": rows, "kind": kind})


@described(
    "a job family's action: retry-notifications {ids | all}, replay-payment {provider, event_id}, "
    "refresh-view {view}",
    path={"verb": Choice(tuple(inputs.DOMAIN_ACTIONS))},
    body={name: spec for schema, _ in inputs.DOMAIN_ACTIONS.values() for name, spec in schema.items()},
    answer=ACTION_RESULT,
)
async def domain_action(request: Request) -> Response:
    body = await domain_body(request)
    try:
        result = await db(actions.domain_action, who(request), request.path_params["verb"], body)
    except actions.ActionError as exc:
        return ApiResponse({"error": str(exc)}, status_code=409)
    except Exception as exc:  # a family's own refusal (UnknownView...)
        return ApiResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=409)
    return ApiResponse(result.as_dict())


@described(
    "every live session; `current` marks the caller's",
    answer=obj(["sessions"], sessions=array(obj(["user_name", "current"]))),
)
async def sessions_list(request: Request) -> Response:
    """Every live session: user, created, last seen, address, browser; `current` marks the caller's."""
    validate.query(request, inputs.NO_PARAMETERS)
    return ApiResponse({"sessions": await db(sessions.active, request.session.get("sid"))})


@described(
    "admins: end every session of `user`, or of every user (`all`)",
    body=inputs.SIGN_OUT_EVERYWHERE,
    answer=ACTION_RESULT,
)
async def sign_out_everywhere(request: Request) -> Response:
    """An admin ends every session of `{"user": name}`, or of every user (`{"all": true}`); audited."""
    body = await change_request(request, inputs.SIGN_OUT_EVERYWHERE)
    target = sign_out_target(body)
    result = await db(sessions.sign_out_everywhere, who(request), target)
    if target is None or target == request.state.user.name:
        request.session.clear()  # this session ended too: the cookie goes
    return ApiResponse(result.as_dict())


@described("this document: the JSON API in OpenAPI 3.1, generated from the routes that serve it")
async def openapi_document(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    secure = config.get().web.secure_cookies
    cookie = web.SECURE_SESSION_COOKIE if secure else web.SESSION_COOKIE
    return ApiResponse(openapi.document(request.app.routes, cookie))
