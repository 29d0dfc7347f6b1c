"""The JSON API behind the same login (for scripts): the same data and actions as the pages.

Log in with `POST /api/login {"username", "password"}` (sets the session cookie, returns the CSRF
token); send that token as `X-CSRF-Token` on every POST.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from dashboard import actions, auth, data, queries
from dashboard.pages import _ids, _int_param, periodic_verb, who
from dashboard.web import ApiResponse, change_request, db
from workers.ledger import DedupKeyTaken


async def login(request: Request) -> Response:
    try:
        body = await request.json()
        name, password = str(body["username"]), str(body["password"])
    except (ValueError, KeyError, TypeError):
        return ApiResponse({"error": 'send {"username": ..., "password": ...}'}, status_code=400)
    limiter: auth.LoginLimiter = request.app.state.login_limiter
    key = auth.client_key(request)
    wait_s = limiter.blocked_for_s(key)
    if wait_s:
        return ApiResponse({"error": f"too many failed logins; retry in {int(wait_s) + 1}s"}, status_code=429)
    user = request.app.state.users.get(name)
    if not auth.verify_password(user, password):
        limiter.failed(key)
        return ApiResponse({"error": "wrong user or password"}, status_code=401)
    limiter.succeeded(key)
    request.session.clear()
    request.session["user"] = name
    return ApiResponse({"user": name, "role": user.role, "csrf_token": auth.csrf_token(request)})


async def me(request: Request) -> Response:
    user = request.state.user
    return ApiResponse({"user": user.name, "role": user.role, "csrf_token": auth.csrf_token(request)})


async def overview(request: Request) -> Response:
    return ApiResponse(await db(data.overview))


async def jobs(request: Request) -> Response:
    try:
        flt = queries.JobFilter.from_params(request.query_params)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    limit = _int_param(request, "limit") or queries.DEFAULT_PAGE_SIZE
    rows, next_id = await db(queries.jobs_page, flt, _int_param(request, "before"), limit)
    return ApiResponse({"jobs": rows, "next_before": next_id, "filter": flt.to_params()})


async def job(request: Request) -> Response:
    detail = await db(data.job_detail, request.path_params["job_id"])
    if detail is None:
        raise HTTPException(404, f"no job {request.path_params['job_id']}")
    return ApiResponse(detail)


_VERBS = {"retry": actions.retry_jobs, "cancel": actions.cancel_jobs, "delete": actions.delete_jobs}


async def job_action(request: Request) -> Response:
    await change_request(request)
    return await _act(request, request.path_params["verb"], [request.path_params["job_id"]])


async def jobs_bulk(request: Request) -> Response:
    """POST /api/jobs/{verb} with {"ids": [...]}, or /api/jobs/retry with {"filter": {...}}: every dead
    job matching the filter."""
    body = await change_request(request)
    verb = request.path_params["verb"]
    if "filter" in body:
        if verb != "retry":
            raise HTTPException(400, "only retry acts on a whole filter")
        try:
            flt = queries.JobFilter.from_params({k: str(v) for k, v in (body["filter"] or {}).items()})
        except (ValueError, AttributeError) as exc:
            raise HTTPException(400, f"filter: {exc}") from None
        result = await db(actions.retry_dead_matching, who(request), flt)
        return ApiResponse(result.as_dict())
    return await _act(request, verb, _ids(body.get("ids")))


async def _act(request: Request, verb: str, ids: list[int]) -> Response:
    fn = _VERBS.get(verb)
    if fn is None:
        raise HTTPException(404, f"unknown action {verb!r}")
    try:
        result = await db(fn, who(request), ids)
    except DedupKeyTaken as exc:
        return ApiResponse({"error": str(exc)}, status_code=409)
    return ApiResponse(result.as_dict())


async def periodic(request: Request) -> Response:
    return ApiResponse({"entries": await db(data.periodic)})


async def periodic_action(request: Request) -> Response:
    return ApiResponse((await periodic_verb(request)).as_dict())


async def domain_queues(request: Request) -> Response:
    return ApiResponse(await db(data.domain.read_all))


async def audit(request: Request) -> Response:
    limit = min(_int_param(request, "limit") or 100, 1000)
    rows = await db(queries.audit_list, limit=limit, before_id=_int_param(request, "before"))
    return ApiResponse({"entries": rows})


async def domain_action(request: Request) -> Response:
    body = await change_request(request)
    try:
        result = await db(actions.domain_action, who(request), request.path_params["verb"], body)
    except actions.ActionError as exc:
        raise HTTPException(400, str(exc)) from None
    except Exception as exc:  # a family's own refusal (UnknownView...)
        return ApiResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=409)
    return ApiResponse(result.as_dict())
