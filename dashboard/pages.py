"""The dashboard's HTML pages and their form posts (each post redirects back with a message)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dashboard import actions, auth, chart, data, queries
from dashboard.web import change_request, db, redirect_with, render, safe_next
from workers.ledger import DedupKeyTaken


def who(request: Request) -> actions.Actor:
    return actions.Actor(request.state.user.name, request.client.host if request.client else None)


# ---- login ------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    next_url = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", next_url=next_url)
    form = await request.form()
    if not auth.csrf_ok(request, form.get("csrf_token")):
        return render(
            request, "login.html", status_code=403, next_url=next_url, error="session expired, try again"
        )
    limiter: auth.LoginLimiter = request.app.state.login_limiter
    key = auth.client_key(request)
    wait_s = limiter.blocked_for_s(key)
    if wait_s:
        return render(
            request,
            "login.html",
            status_code=429,
            next_url=next_url,
            error=f"too many failed logins: try again in {int(wait_s) + 1}s",
        )
    name, password = str(form.get("username", "")), str(form.get("password", ""))
    user = request.app.state.users.get(name)
    if not auth.verify_password(user, password):
        limiter.failed(key)
        return render(
            request, "login.html", status_code=401, next_url=next_url, error="wrong user or password"
        )
    limiter.succeeded(key)
    request.session.clear()
    request.session["user"] = name
    auth.csrf_token(request)
    return RedirectResponse(safe_next(str(form.get("next", "")) or next_url), status_code=303)


async def logout(request: Request) -> Response:
    form = await request.form()
    if auth.csrf_ok(request, form.get("csrf_token")):
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


# ---- pages ------------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    info = await db(data.overview)
    return render(
        request,
        "overview.html",
        info=info,
        chart_hour=chart.bars(info["last_hour"], "attempts per minute, last hour"),
        chart_day=chart.bars(info["last_day"], "attempts per 15 minutes, last 24 h"),
    )


def _filter(request: Request) -> queries.JobFilter:
    try:
        return queries.JobFilter.from_params(request.query_params)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise HTTPException(400, f"{name} must be a whole number") from None


async def jobs(request: Request) -> Response:
    flt = _filter(request)
    before = _int_param(request, "before")
    rows, next_id = await db(queries.jobs_page, flt, before)
    params = flt.to_params()
    next_url = "/jobs?" + urlencode({**params, "before": next_id}) if next_id else None
    return render(
        request,
        "jobs.html",
        rows=rows,
        flt=flt,
        params=params,
        next_url=next_url,
        first_url="/jobs?" + urlencode(params) if before else None,
        states=list(data.ledger.JobState),
        here=str(request.url.path) + ("?" + request.url.query if request.url.query else ""),
    )


async def job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    detail = await db(data.job_detail, job_id)
    if detail is None:
        raise HTTPException(404, f"no job {job_id}")
    return render(request, "job.html", job=detail)


async def periodic(request: Request) -> Response:
    return render(request, "periodic.html", entries=await db(data.periodic))


async def domain_queues(request: Request) -> Response:
    return render(request, "queues.html", sections=await db(data.domain.read_all))


async def audit(request: Request) -> Response:
    before = _int_param(request, "before")
    rows = await db(queries.audit_list, limit=100, before_id=before)
    next_url = f"/audit?before={rows[-1]['audit_id']}" if len(rows) == 100 else None
    return render(request, "audit.html", rows=rows, next_url=next_url)


# ---- actions (POST, CSRF, admin) -------------------------------------------------------------


def _ids(values: object) -> list[int]:
    raw = values if isinstance(values, list) else [values] if values else []
    try:
        return sorted({int(v) for v in raw})
    except (TypeError, ValueError):
        raise HTTPException(400, "job ids must be whole numbers") from None


async def job_action(request: Request) -> Response:
    body = await change_request(request)
    job_id, verb = request.path_params["job_id"], request.path_params["verb"]
    result = await _run(request, verb, [job_id])
    back = "/jobs" if verb == "delete" and result.changed else f"/jobs/{job_id}"
    return redirect_with(
        request, safe_next(body.get("back"), back) if verb != "delete" else back, result.message
    )


async def jobs_bulk(request: Request) -> Response:
    body = await change_request(request)
    verb = str(body.get("verb", ""))
    back = safe_next(body.get("back"), "/jobs")
    if body.get("scope") == "filter":
        try:
            flt = queries.JobFilter.from_params(body)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        if verb != "retry":
            raise HTTPException(400, "only retry acts on a whole filter")
        result = await db(actions.retry_dead_matching, who(request), flt)
    else:
        ids = _ids(body.get("ids"))
        if not ids:
            return redirect_with(request, back, "no job selected: nothing done")
        result = await _run(request, verb, ids)
    return redirect_with(request, back, result.message)


async def _run(request: Request, verb: str, ids: list[int]) -> actions.ActionResult:
    fn = {"retry": actions.retry_jobs, "cancel": actions.cancel_jobs, "delete": actions.delete_jobs}.get(verb)
    if fn is None:
        raise HTTPException(400, f"unknown action {verb!r}")
    try:
        return await db(fn, who(request), ids)
    except DedupKeyTaken as exc:
        return actions.ActionResult(str(exc))


async def periodic_verb(request: Request) -> actions.ActionResult:
    """Run now / enable / disable a schedule entry (the page and the JSON API)."""
    await change_request(request)
    name, verb = request.path_params["name"], request.path_params["verb"]
    try:
        if verb == "run":
            return await db(actions.run_entry_now, who(request), name)
        if verb in ("enable", "disable"):
            return await db(actions.set_entry_enabled, who(request), name, verb == "enable")
    except actions.ActionError as exc:
        raise HTTPException(404, str(exc)) from None
    raise HTTPException(404, f"unknown action {verb!r}")


async def periodic_action(request: Request) -> Response:
    result = await periodic_verb(request)
    return redirect_with(request, "/periodic", result.message)


async def domain_action(request: Request) -> Response:
    body = await change_request(request)
    try:
        result = await db(actions.domain_action, who(request), request.path_params["verb"], body)
    except actions.ActionError as exc:
        raise HTTPException(400, str(exc)) from None
    except Exception as exc:  # a family's own refusal (UnknownView...) is a message, not a 500
        result = actions.ActionResult(f"failed: {type(exc).__name__}: {exc}")
    return redirect_with(request, "/queues", result.message)
