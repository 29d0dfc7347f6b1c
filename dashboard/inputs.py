"""What each console endpoint accepts: the schemas `dashboard.validate` checks requests against.

Pages and the JSON API share the field rules; page forms also carry `csrf_token`, `request_id`
(double-click protection) and `back` (where to return).
"""

from __future__ import annotations

from typing import Any

from dashboard import queries
from dashboard.validate import ID, Choice, Flag, Int, ListOf, Object, Schema, Text, When
from db.schema.ledger import JobState

# Rows of the audit log per page (the page), and the most an API call may ask for.
AUDIT_PAGE_SIZE = 100
MAX_AUDIT_PAGE_SIZE = 1000
# Longest user name and password a login takes (argon2 hashes whatever it gets: keep it bounded).
MAX_USER_NAME = 100
MAX_PASSWORD = 1024
# Longest local URL a form or a login link returns to (a jobs list's, with its filter).
MAX_URL = 10_000

JOB_VERBS = ("retry", "cancel", "delete")

JOB_FILTER: Schema = {
    "state": Choice(tuple(JobState)),
    "actor": Text(200),
    "queue": Text(200),
    "dedup_key": Text(1000),
    "since": When(),
    "until": When(),
    "text": Text(200),
}
# Fields every page form carries.
PAGE_FORM: Schema = {"csrf_token": Text(200), "request_id": Text(100), "back": Text(MAX_URL)}

JOBS_PAGE: Schema = {**JOB_FILTER, "before": ID}
JOBS_API: Schema = {**JOBS_PAGE, "limit": Int(1, queries.MAX_PAGE_SIZE)}
# The overview's charts: a range of the rollup (workers/stats.py), one queue or actor or all.
OVERVIEW_PAGE: Schema = {"range": Choice(("1h", "24h", "7d")), "queue": Text(200), "actor": Text(200)}
# "Retry all of these" on the failures page: one group of dead jobs, named by its error group.
FAILURES_RETRY: Schema = {"error_group": Text(400, strip=False)}
AUDIT_PAGE: Schema = {"before": ID, "kind": Choice(queries.AUDIT_KINDS)}
# The audit log shows people's actions unless asked for the system's (`kind=system`) or all.
DEFAULT_AUDIT_KIND = "ops"
AUDIT_API: Schema = {**AUDIT_PAGE, "limit": Int(1, MAX_AUDIT_PAGE_SIZE)}
NO_PARAMETERS: Schema = {}

LOGIN_PAGE: Schema = {"next": Text(MAX_URL)}
LOGIN_FORM: Schema = {
    "csrf_token": Text(200),
    "next": Text(MAX_URL),
    "username": Text(MAX_USER_NAME, strip=False),
    "password": Text(MAX_PASSWORD, strip=False),
}
LOGIN_API: Schema = {
    "username": Text(MAX_USER_NAME, strip=False),
    "password": Text(MAX_PASSWORD, strip=False),
}
LOGIN_REQUIRED = ("username", "password")
LOGOUT_FORM: Schema = {"csrf_token": Text(200)}

JOB_IDS = ListOf(ID, queries.MAX_BULK)
JOBS_BULK_FORM: Schema = {
    **PAGE_FORM,
    **JOB_FILTER,
    "verb": Choice(JOB_VERBS),
    "scope": Choice(("filter", "selected")),
    "ids": JOB_IDS,
}
JOBS_BULK_API: Schema = {"ids": JOB_IDS, "filter": Object(JOB_FILTER)}

# The job families' actions (dashboard/actions.domain_action): each verb's fields and the ones required.
DOMAIN_ACTIONS: dict[str, tuple[Schema, tuple[str, ...]]] = {
    "retry-notifications": ({"ids": ListOf(ID, queries.MAX_BULK), "all": Flag()}, ()),
    "replay-payment": ({"provider": Text(50), "event_id": Text(255)}, ("provider", "event_id")),
    "refresh-view": ({"view": Text(63)}, ("view",)),
}

SIGN_OUT_EVERYWHERE: Schema = {"user": Text(MAX_USER_NAME), "all": Flag()}
PERIODIC_NAME = Text(200)


def job_filter(values: dict[str, Any]) -> queries.JobFilter:
    """The jobs-list filter from checked values (other keys are ignored)."""
    return queries.JobFilter(**{k: v for k, v in values.items() if k in JOB_FILTER})
