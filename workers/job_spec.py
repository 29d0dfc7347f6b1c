"""What a job may be: `JobSpec`, its limits, and the checks `enqueue` runs before any write.

Every refusal is an `EnqueueError` naming the field; nothing reaches the database before all the
jobs of a call passed. The limits keep a job within what PostgreSQL and the broker accept (a
text without NUL, valid Unicode, a dedup key that fits its unique index, an interval PostgreSQL
can add to now) and within reason for a queue (the arguments travel in every message).
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq

from workers import flow

# Retries an actor gets unless it sets `max_retries` (so max_retries + 1 attempts in all).
DEFAULT_MAX_RETRIES = 10
# The arguments of one job, as JSON (args and kwargs together): they travel in every message.
MAX_ARGUMENT_BYTES = 1024 * 1024
# A dedup key, in UTF-8 bytes: well inside what a B-tree index entry may hold (2,704 bytes).
MAX_DEDUP_KEY_BYTES = 1024
# The longest delay, dedup window or distance to an eta: ten years.
MAX_DELAY_S = 10 * 365 * 86400.0
# Actor and queue names.
MAX_NAME_LENGTH = 200
# Priorities: 0 runs first (the default), 9 last.
PRIORITIES = range(10)


class EnqueueError(ValueError):
    """The job cannot be enqueued as asked (unknown actor or queue, bad arguments, a value out of
    its limits); `field` names what is wrong (None: the call as a whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class JobSpec:
    """One job to enqueue (the arguments of `enqueue`, for `enqueue_many`)."""

    actor: dramatiq.Actor | str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] | None = None
    dedup_key: str | None = None
    dedup_window: timedelta | float | None = None
    delay: timedelta | float | None = None
    eta: datetime | None = None
    queue: str | None = None
    priority: int | None = None  # 0 first .. 9 last; None: the actor's `priority` option (default 0)


@dataclass(frozen=True)
class JobRef:
    """What enqueue returns: the job's id, and whether this call created it."""

    id: int
    created: bool
    state: str


@dataclass
class Row:
    """A checked job, as the ledger's INSERT takes it."""

    actor: str
    queue: str
    args: str
    kwargs: str
    dedup_key: str | None
    dedup_window_s: float | None
    delay_s: float | None
    eta: datetime | None
    max_attempts: int
    priority: int
    flow_key: str | None  # the actor's concurrency_key of the arguments (workers/flow.py)
    call: tuple[list[Any], dict[str, Any]]  # the arguments as given (for a message sent at once)
    ref: JobRef | None = field(default=None)
    message_id: str | None = None  # set when the row was inserted published (sent at once)


def resolve_actor(actor: dramatiq.Actor | str) -> dramatiq.Actor:
    from workers.broker import broker  # the actors this process declared (jobs.registry: every one)

    if isinstance(actor, dramatiq.Actor):
        name = actor.actor_name
    elif isinstance(actor, str) and len(actor) <= MAX_NAME_LENGTH:
        name = actor
    else:
        raise EnqueueError(f"actor must be an actor or its name, got {_short(actor)}", "actor")
    try:
        return broker.get_actor(name)
    except dramatiq.ActorNotFound:
        known = ", ".join(sorted(broker.get_declared_actors())) or "none"
        raise EnqueueError(
            f"unknown actor {name!r} (known actors: {known}; `import skyport.app` declares every "
            "job family's actors and SKYPORT_EXTRA_MODULES)",
            "actor",
        ) from None


# Computing a signature costs more than the rest of the validation; an actor's function is fixed.
_signature = functools.lru_cache(maxsize=1024)(inspect.signature)


def validate_spec(spec: JobSpec) -> Row:
    """Check a job before it is written; raises EnqueueError saying what is wrong."""
    actor = resolve_actor(spec.actor)
    queue = _queue(actor, spec.queue)
    args, kwargs = _arguments(actor, spec.args, spec.kwargs)
    args_json, kwargs_json = _json("args", args), _json("kwargs", kwargs)
    if len(args_json) + len(kwargs_json) > MAX_ARGUMENT_BYTES:  # ASCII: characters are bytes
        raise EnqueueError(
            f"the arguments take {len(args_json) + len(kwargs_json):,} bytes as JSON, more than "
            f"{MAX_ARGUMENT_BYTES:,}: pass a reference to the data (a row id, a file) instead",
            "args",
        )
    if spec.eta is not None and spec.delay is not None:
        raise EnqueueError("give either delay or eta, not both", "eta")
    if spec.dedup_window is not None and spec.dedup_key is None:
        raise EnqueueError("dedup_window needs a dedup_key", "dedup_window")
    max_retries = actor.options.get("max_retries", DEFAULT_MAX_RETRIES)
    try:
        key = flow.flow_key(actor, args, kwargs)
    except flow.FlowError as exc:
        raise EnqueueError(str(exc), exc.field) from None
    except Exception as exc:  # the actor's own key function refused these arguments
        raise EnqueueError(f"{actor.actor_name}: concurrency_key failed: {exc!r:.200}", "args") from None
    return Row(
        actor=actor.actor_name,
        queue=queue,
        args=args_json,
        kwargs=kwargs_json,
        dedup_key=_dedup_key(spec.dedup_key),
        dedup_window_s=_seconds("dedup_window", spec.dedup_window),
        delay_s=_seconds("delay", spec.delay),
        eta=_eta(spec.eta),
        max_attempts=max_retries + 1,
        priority=_priority(actor, spec.priority),
        flow_key=key,
        call=(args, kwargs),
    )


def _priority(actor: dramatiq.Actor, priority: Any) -> int:
    if priority is None:  # Dramatiq's actor option, 0 first as here; kept within 0..9
        return min(max(int(actor.priority), PRIORITIES[0]), PRIORITIES[-1])
    if isinstance(priority, bool) or not isinstance(priority, int) or priority not in PRIORITIES:
        raise EnqueueError(
            f"priority must be a whole number from 0 (first) to 9, got {_short(priority)}", "priority"
        )
    return priority


def _queue(actor: dramatiq.Actor, queue: Any) -> str:
    if queue is None:
        return actor.queue_name
    declared = actor.broker.get_declared_queues()
    if not isinstance(queue, str) or queue not in declared:
        raise EnqueueError(
            f"unknown queue {_short(queue)} (declared queues: {', '.join(sorted(declared))})", "queue"
        )
    return queue


def _arguments(actor: dramatiq.Actor, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    if isinstance(args, str | bytes) or not isinstance(args, Sequence):
        raise EnqueueError(f"args must be a list or tuple, got {type(args).__name__}", "args")
    if kwargs is not None and not (isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
        raise EnqueueError("kwargs must be a dict with string keys", "kwargs")
    args, kwargs = list(args), dict(kwargs or {})
    try:
        _signature(actor.fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise EnqueueError(f"invalid arguments for {actor.actor_name}: {exc}", "args") from None
    return args, kwargs


def _json(name: str, value: Any) -> str:
    try:
        text = json.dumps(value, allow_nan=False)  # ASCII: non-ASCII characters are escaped
    except (TypeError, ValueError, RecursionError) as exc:
        raise EnqueueError(f"{name} must be JSON-serializable: {exc}", name) from None
    # PostgreSQL's jsonb refuses NUL and unpaired surrogates; look closer only when an escape
    # that could be one of them is there at all.
    if ("\\u0000" in text or "\\ud" in text) and (bad := _bad_text(value)) is not None:
        raise EnqueueError(f"{name} holds text PostgreSQL cannot store: {bad}", name)
    return text


def _bad_text(value: Any) -> str | None:
    """Why a string inside `value` (keys too) cannot be stored, or None."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif isinstance(item, str) and (problem := text_problem(item)):
            return problem
    return None


def text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone surrogate (not valid Unicode)"
    return None


def _dedup_key(key: Any) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise EnqueueError(f"dedup_key must be a non-empty string, got {_short(key)}", "dedup_key")
    if problem := text_problem(key):
        raise EnqueueError(f"dedup_key holds {problem}", "dedup_key")
    if len(key.encode("utf-8")) > MAX_DEDUP_KEY_BYTES:
        raise EnqueueError(f"dedup_key is longer than {MAX_DEDUP_KEY_BYTES} bytes (UTF-8)", "dedup_key")
    return key


def _seconds(name: str, value: timedelta | float | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        raise EnqueueError(f"{name} must be seconds or a timedelta, got {_short(value)}", name)
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_DELAY_S:
        raise EnqueueError(f"{name} must be between 0 and {MAX_DELAY_S:.0f} seconds, got {seconds}", name)
    return float(seconds)


def _eta(eta: Any) -> datetime | None:
    if eta is None:
        return None
    if not isinstance(eta, datetime) or eta.tzinfo is None:
        raise EnqueueError(f"eta must be a timezone-aware datetime, got {_short(eta)}", "eta")
    if (eta - datetime.now(eta.tzinfo)).total_seconds() > MAX_DELAY_S:
        raise EnqueueError(f"eta must be within {MAX_DELAY_S:.0f} seconds from now, got {eta}", "eta")
    return eta


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
