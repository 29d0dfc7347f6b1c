"""The dashboard's HTML pages and their form posts (each post redirects back with a message)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dashboard import actions, auth, chart, data, failures, inputs, queries, sessions, validate
from dashboard import login as login_flow
from dashboard.validate import BadInput
from dashboard.web import change_request, db, is_api, redirect_with, render, safe_next
from workers.ledger import DedupKeyTaken


def who(request: Request) -> actions.Actor:
    return actions.Actor(request.state.user.name, auth.client_address(request))


# ---- login ------------------------------------------------------------------------------------


async def login(request: Request) -> Response:
    if request.method == "GET":
        next_url = safe_next(validate.query(request, inputs.LOGIN_PAGE).get("next"))
        return render(request, "login.html", next_url=next_url)
    form = await validate.form(request, inputs.LOGIN_FORM)
    next_url = safe_next(form.get("next"))
    if not auth.csrf_ok(request, form.get("csrf_token")):
        return render(
            request, "login.html", status_code=403, next_url=next_url, error="session expired, try again"
        )
    try:
        await login_flow.log_in(request, form.get("username", ""), form.get("password", ""))
    except login_flow.LoginRefused as refused:
        response = render(
            request, "login.html", status_code=refused.status, next_url=next_url, error=refused.message
        )
        response.headers.update(refused.headers)
        return response
    return RedirectResponse(next_url, status_code=303)


async def logout(request: Request) -> Response:
    form = await validate.form(request, inputs.LOGOUT_FORM)
    if auth.csrf_ok(request, form.get("csrf_token")):
        await login_flow.log_out(request)
    return RedirectResponse("/login", status_code=303)


# ---- pages ------------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    values = validate.query(request, inputs.OVERVIEW_PAGE)
    shown = {"range": values.get("range", "1h"), "queue": values.get("queue"), "actor": values.get("actor")}
    info = await db(data.overview, shown["range"], shown["queue"], shown["actor"])
    return render(
        request, "overview.html", info=info, shown=shown, charts=chart.overview_charts(info["stats"])
    )


async def jobs(request: Request) -> Response:
    values = validate.query(request, inputs.JOBS_PAGE)
    flt, before = inputs.job_filter(values), values.get("before")
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
    validate.query(request, inputs.NO_PARAMETERS)
    job_id = validate.path(request, "job_id", validate.ID)
    detail = await db(data.job_detail, job_id)
    if detail is None:
        raise HTTPException(404, f"no job {job_id}")
    return render(request, "job.html", job=detail)


async def failures_page(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    return render(request, "failures.html", groups=await db(failures.groups))


async def failures_retry(request: Request) -> Response:
    """Retry all of one group's dead jobs (admin, CSRF; each retry audited)."""
    body = await change_request(
        request, {**inputs.PAGE_FORM, **inputs.FAILURES_RETRY}, required=("error_group",)
    )
    result = await db(failures.retry_group, who(request), body["error_group"])
    return redirect_with(request, "/failures", result.message)


async def periodic(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    return render(request, "periodic.html", entries=await db(data.periodic))


async def domain_queues(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    from dashboard import flow

    sections = await db(data.domain.read_all)
    return render(request, "queues.html", sections=sections, flow=await db(flow.table))


async def audit(request: Request) -> Response:
    values = validate.query(request, inputs.AUDIT_PAGE)
    kind = values.get("kind", inputs.DEFAULT_AUDIT_KIND)
    rows = await db(data.audit_entries, kind, inputs.AUDIT_PAGE_SIZE, values.get("before"))
    full = len(rows) == inputs.AUDIT_PAGE_SIZE
    next_url = "/audit?" + urlencode({"kind": kind, "before": rows[-1]["audit_id"]}) if full else None
    return render(request, "audit.html", rows=rows, next_url=next_url, kind=kind)


async def sessions_page(request: Request) -> Response:
    validate.query(request, inputs.NO_PARAMETERS)
    rows = await db(sessions.active, request.session.get("sid"))
    return render(request, "sessions.html", rows=rows, users=sorted(request.app.state.users))


# ---- actions (POST, CSRF, admin) -------------------------------------------------------------


async def job_action(request: Request) -> Response:
    job_id = validate.path(request, "job_id", validate.ID)
    body = await change_request(request, inputs.PAGE_FORM)
    verb = request.path_params["verb"]
    result = await _run(request, verb, [job_id])
    back = "/jobs" if verb == "delete" and result.changed else f"/jobs/{job_id}"
    return redirect_with(
        request, safe_next(body.get("back"), back) if verb != "delete" else back, result.message
    )


async def jobs_bulk(request: Request) -> Response:
    body = await change_request(request, inputs.JOBS_BULK_FORM, required=("verb",))
    verb = body["verb"]
    back = safe_next(body.get("back"), "/jobs")
    if body.get("scope") == "filter":
        if verb != "retry":
            raise BadInput("verb", "only retry acts on a whole filter")
        result = await db(actions.retry_dead_matching, who(request), inputs.job_filter(body))
    else:
        ids = sorted(set(body.get("ids", [])))
        if not ids:
            return redirect_with(request, back, "no job selected: nothing done")
        result = await _run(request, verb, ids)
    return redirect_with(request, back, result.message)


JOB_ACTIONS = {"retry": actions.retry_jobs, "cancel": actions.cancel_jobs, "delete": actions.delete_jobs}


def job_verb(verb: str) -> Callable[..., actions.ActionResult]:
    """The action a job verb names (the page and the JSON API)."""
    if verb not in JOB_ACTIONS:
        raise BadInput("verb", f"unknown action; one of {', '.join(JOB_ACTIONS)}")
    return JOB_ACTIONS[verb]


async def _run(request: Request, verb: str, ids: list[int]) -> actions.ActionResult:
    fn = job_verb(verb)
    try:
        return await db(fn, who(request), ids)
    except DedupKeyTaken as exc:
        return actions.ActionResult(str(exc))


async def periodic_verb(request: Request) -> actions.ActionResult:
    """Run now / enable / disable a schedule entry (the page and the JSON API)."""
    name = validate.path(request, "name", inputs.PERIODIC_NAME)
    verb = request.path_params["verb"]
    await change_request(request, {} if is_api(request) else inputs.PAGE_FORM)
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


async def domain_body(request: Request) -> dict:
    """The checked body of a job family's action (the page and the JSON API)."""
    verb = request.path_params["verb"]
    if verb not in inputs.DOMAIN_ACTIONS:
        raise BadInput("verb", f"unknown action; one of {', '.join(inputs.DOMAIN_ACTIONS)}")
    schema, required = inputs.DOMAIN_ACTIONS[verb]
    if not is_api(request):
        schema = {**inputs.PAGE_FORM, **schema}
    body = await change_request(request, schema, required=required)
    if verb == "retry-notifications" and not (body.get("ids") or body.get("all")):
        raise BadInput("ids", "name the notifications to retry, or send all")
    return body


async def domain_action(request: Request) -> Response:
    body = await domain_body(request)
    try:
        result = await db(actions.domain_action, who(request), request.path_params["verb"], body)
    except actions.ActionError as exc:
        raise HTTPException(409, str(exc)) from None
    except Exception as exc:  # a family's own refusal (UnknownView...) is a message, not a 500
        result = actions.ActionResult(f"failed: {type(exc).__name__}: {exc}")
    return redirect_with(request, "/queues", result.message)


async def sign_out_everywhere(request: Request) -> Response:
    """An admin ends every session of one user (`user`), or of every user (`all`)."""
    body = await change_request(request, {**inputs.PAGE_FORM, **inputs.SIGN_OUT_EVERYWHERE})
    target = sign_out_target(body)
    result = await db(sessions.sign_out_everywhere, who(request), target)
    if target is None or target == request.state.user.name:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)
    return redirect_with(request, "/sessions", result.message)


def sign_out_target(body: dict) -> str | None:
    """The user whose sessions end (None: every user's), from `user` or `all`."""
    if body.get("all") and "user" not in body:
        return None
    if body.get("all") or "user" not in body:
        raise BadInput("user", "name one user, or send all (not both)")
    return body["user"]
