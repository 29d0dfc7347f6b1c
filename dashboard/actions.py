"""Ops actions: each changes the ledger through workers/ledger.py or scheduler/, is written to
audit_log in the same transaction, and says what it did. Every one is idempotent: the ledger's
writes are guarded by the states they expect, so a double click retries once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from dashboard import queries
from jobs.family import command_user
from scheduler import runner, schedule, state
from workers import ledger

# Attempts a retried job gets (like `skyport jobs retry`): it runs once more.
DEFAULT_RETRY_EXTRA_ATTEMPTS = 1


class ActionError(Exception):
    """The action cannot be done as asked; the message says why."""


@dataclass
class ActionResult:
    message: str
    changed: list[Any] = field(default_factory=list)
    skipped: list[Any] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "changed": self.changed, "skipped": self.skipped}


@dataclass(frozen=True)
class Actor:
    """Who does an action: the console user and the client's address (None when it is not an IP
    address: a unix socket, a test client)."""

    user: str
    ip: str | None = None
    # `ops:` for a console user, `cli:` for whoever runs a `skyport` command.
    prefix: str = queries.OPS_PREFIX

    def __post_init__(self) -> None:
        object.__setattr__(self, "ip", queries.ip_or_none(self.ip))

    @classmethod
    def command_line(cls) -> Actor:
        """Whoever runs a `skyport` command, as the audit log names them: `cli:<login>`."""
        prefix, _, login = command_user().partition(":")
        return cls(login, prefix=f"{prefix}:")

    @property
    def by(self) -> str:
        """The name the audit log and the ledger give the user: `ops:<user>` or `cli:<login>`
        (the system's is `job:<actor>`)."""
        return f"{self.prefix}{self.user}"


def _audit(conn: psycopg.Connection, who: Actor, verb: str, ids: list[Any], details: dict[str, Any]) -> None:
    """One audit row per changed job (the detail page finds a job's own entries)."""
    for target in ids:
        queries.audit_write(
            conn,
            user=who.by,
            ip=who.ip,
            verb=verb,
            table_name="jobs",
            record_id=str(target),
            details=details,
            action="DELETE" if verb == "delete" else "UPDATE",
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def retry_jobs(
    conn: psycopg.Connection, who: Actor, job_ids: list[int], *, scope: str = "selected"
) -> ActionResult:
    """Retry dead or cancelled jobs; the others (already queued again...) are left alone."""
    with conn.transaction():
        before = ledger.attempts_of(conn, job_ids)
        retried = ledger.jobs_retry_many(conn, job_ids, DEFAULT_RETRY_EXTRA_ATTEMPTS)
        for job_id in retried:
            _audit(conn, who, "retry", [job_id], {"after_attempt": before.get(job_id), "scope": scope})
    skipped = [i for i in job_ids if i not in set(retried)]
    message = f"retried {_plural(len(retried), 'job')}"
    if skipped:
        message += f"; {_plural(len(skipped), 'job')} not dead or cancelled (or dedup key taken): unchanged"
    return ActionResult(message, retried, skipped)


def cancel_jobs(conn: psycopg.Connection, who: Actor, job_ids: list[int]) -> ActionResult:
    cancelled, skipped = [], []
    with conn.transaction():
        for job_id in job_ids:
            if ledger.job_cancel(conn, job_id, by=who.by):
                cancelled.append(job_id)
                _audit(conn, who, "cancel", [job_id], {})
            else:
                skipped.append(job_id)
    message = f"cancelled {_plural(len(cancelled), 'job')}"
    if skipped:
        message += f"; {_plural(len(skipped), 'job')} already finished: unchanged"
    return ActionResult(message, cancelled, skipped)


def delete_jobs(conn: psycopg.Connection, who: Actor, job_ids: list[int]) -> ActionResult:
    with conn.transaction():
        deleted = ledger.jobs_delete_finished(conn, job_ids)
        _audit(conn, who, "delete", deleted, {})
    skipped = [i for i in job_ids if i not in set(deleted)]
    message = f"deleted {_plural(len(deleted), 'finished job')}"
    if skipped:
        message += f"; {_plural(len(skipped), 'job')} not finished, gone, or in a dedup window: kept"
    return ActionResult(message, deleted, skipped)


def retry_dead_matching(conn: psycopg.Connection, who: Actor, flt: queries.JobFilter) -> ActionResult:
    """Retry every dead job the filter matches (at most queries.MAX_BULK per request)."""
    dead = queries.JobFilter(**{**flt.__dict__, "state": "dead"})
    ids = queries.job_ids_matching(conn, dead)
    if not ids:
        return ActionResult("no dead job matches the filter: nothing retried")
    return retry_jobs(conn, who, ids, scope="filter " + str(flt.to_params()))


def _entry(name: str) -> schedule.PeriodicJob:
    for job in schedule.load_schedule():
        if job.name == name:
            return job
    raise ActionError(f"no schedule entry named {name!r}")


def run_entry_now(conn: psycopg.Connection, who: Actor, name: str) -> ActionResult:
    entry = _entry(name)
    ref = runner.run_now(entry, by=who.by)
    queries.audit_write(
        conn,
        user=who.by,
        ip=who.ip,
        verb="run now",
        table_name="schedule",
        record_id=name,
        details={"job_id": ref.id},
    )
    return ActionResult(f"{name}: enqueued job {ref.id}", [ref.id])


def set_entry_enabled(conn: psycopg.Connection, who: Actor, name: str, enabled: bool) -> ActionResult:
    _entry(name)
    verb = "enable" if enabled else "disable"
    with conn.transaction():
        state.set_enabled(conn, name, enabled, by=who.by)
        queries.audit_write(
            conn, user=who.by, ip=who.ip, verb=verb, table_name="schedule", record_id=name, details={}
        )
    return ActionResult(f"{name}: {'enabled' if enabled else 'disabled'}", [name])


# ---- the job families' actions (dashboard/domain.py) ------------------------------------------


def domain_action(conn: psycopg.Connection, who: Actor, verb: str, body: dict[str, Any]) -> ActionResult:
    """retry-notifications (`ids` or all), replay-payment (`provider`, `event_id`), refresh-view (`view`).
    Notifications and payments write their own audit rows; a refresh request is audited here."""
    from dashboard import domain

    try:
        if verb == "retry-notifications":
            raw = body.get("ids")
            ids = (
                None if body.get("all") else [int(i) for i in (raw if isinstance(raw, list) else [raw]) if i]
            )
            retried = domain.act("retry_notifications", conn, who.by, who.ip, queue_ids=ids)
            return ActionResult(f"retried {_plural(len(retried), 'dead notification')}", retried)
        if verb == "replay-payment":
            provider, event_id = str(body.get("provider") or ""), str(body.get("event_id") or "")
            if domain.act("replay_payment_event", conn, who.by, who.ip, provider=provider, event_id=event_id):
                return ActionResult(f"payment event {provider}/{event_id} replayed", [event_id])
            return ActionResult(
                f"payment event {provider}/{event_id} is not unmatched or rejected: unchanged"
            )
        if verb == "refresh-view":
            view = str(body.get("view") or "")
            with conn.transaction():
                job_id = domain.act("refresh_view", conn, who.by, who.ip, view=view)
                queries.audit_write(
                    conn,
                    user=who.by,
                    ip=who.ip,
                    verb="refresh now",
                    table_name="matview",
                    record_id=view,
                    details={"job_id": job_id},
                )
            return ActionResult(f"refresh of {view} requested: job {job_id}", [job_id])
    except domain.NotAvailable as exc:
        raise ActionError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise ActionError(f"bad request: {exc}") from None
    raise ActionError(f"unknown action {verb!r}")
