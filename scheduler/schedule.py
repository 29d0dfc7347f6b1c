"""The schedule: one declarative table of periodic jobs, and how configuration changes it.

A trigger is `every <N><s|m|h|d>` (aligned to the Unix epoch, so every scheduler process
computes the same ticks) or a 5-field crontab expression (UTC unless the entry names a time
zone; in a named zone it follows the wall clock: once per matching time across DST changes).
Without code changes:
- `SKYPORT_SCHEDULE_<NAME>` (name upper-cased) sets an entry's trigger, or `off` / `on`;
- `SKYPORT_SCHEDULE_FILE` names a TOML file of tables `[<name>]` with any of trigger, enabled,
  actor, args, kwargs, queue, timezone, grace_s; a name not in the code adds an entry.
Ops can also switch entries on and off at run time (`schedule_overrides`, dashboard and CLI).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

import config
from config import SchedulerConfig
from jobs import registry
from scheduler.triggers import WallClockCronTrigger

# Interval triggers count from here, so that all schedulers agree on the tick times.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A tick more than this late (scheduler down, overloaded) is skipped and logged.
DEFAULT_GRACE_S = 60.0

_EVERY = re.compile(r"^every\s+(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScheduleError(ValueError):
    """The schedule is invalid; the message names the entry."""


@dataclass(frozen=True)
class PeriodicJob:
    name: str
    actor: str
    trigger: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    enabled: bool = True
    timezone: str = "UTC"
    grace_s: float = DEFAULT_GRACE_S

    def build_trigger(self) -> BaseTrigger:
        """The APScheduler trigger; raises ScheduleError naming this entry."""
        try:
            tz = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ScheduleError(
                f"schedule entry {self.name!r}: unknown time zone {self.timezone!r}"
            ) from None
        text = self.trigger.strip()
        every = _EVERY.match(text)
        if every:
            seconds = float(every.group(1)) * _UNIT_S[every.group(2)]
            if seconds <= 0:
                raise ScheduleError(f"schedule entry {self.name!r}: interval must be positive: {text!r}")
            return IntervalTrigger(seconds=seconds, start_date=EPOCH, timezone=tz)
        try:
            if self.timezone == "UTC":
                return CronTrigger.from_crontab(text, timezone=UTC)
            return WallClockCronTrigger(text, tz)
        except ValueError as exc:
            raise ScheduleError(
                f"schedule entry {self.name!r}: invalid trigger {text!r} "
                f"(use 'every 30s' or a 5-field crontab expression): {exc}"
            ) from None

    def period(self) -> timedelta:
        """The time between two ticks (for cron: between the next two)."""
        trigger = self.build_trigger()
        now = datetime.now(UTC)
        first = trigger.get_next_fire_time(None, now)
        second = trigger.get_next_fire_time(first, first + timedelta(microseconds=1))
        return second - first if first and second else timedelta(days=1)


def shipped_schedule() -> tuple[PeriodicJob, ...]:
    """Every job family's entries (jobs/registry.py), before configuration changes them."""
    return tuple(
        PeriodicJob(p.name, p.actor, p.trigger, args=p.args, grace_s=p.grace_s or DEFAULT_GRACE_S)
        for p in registry.schedule()
    )


# The schedule as the code ships it.
SCHEDULE = shipped_schedule()


def env_name(name: str) -> str:
    return config.SCHEDULE_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def load_schedule(
    base: tuple[PeriodicJob, ...] = SCHEDULE, cfg: SchedulerConfig | None = None
) -> list[PeriodicJob]:
    """The code's table with the config file's and the environment's changes applied."""
    cfg = cfg or config.get().scheduler
    entries = {job.name: job for job in base}
    path = cfg.file
    if path:
        for name, changes in _read_file(path).items():
            entries[name] = _apply(entries.get(name), name, changes, source=path)
    for name, job in list(entries.items()):
        value = cfg.overrides.get(env_name(name), "")
        if not value:
            continue
        if value.lower() in ("off", "false", "0", "disabled"):
            entries[name] = replace(job, enabled=False)
        elif value.lower() in ("on", "true", "1", "enabled"):
            entries[name] = replace(job, enabled=True)
        else:
            entries[name] = replace(job, trigger=value)
    return list(entries.values())


def _read_file(path: str) -> dict[str, dict[str, Any]]:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ScheduleError(f"SKYPORT_SCHEDULE_FILE: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScheduleError(f"SKYPORT_SCHEDULE_FILE: {path} is not valid TOML: {exc}") from None
    for name, table in data.items():
        if not isinstance(table, dict):
            raise ScheduleError(f"schedule entry {name!r} in {path}: expected a table [{name}]")
    return data


_FIELDS = {"actor", "trigger", "args", "kwargs", "queue", "enabled", "timezone", "grace_s"}


def _apply(job: PeriodicJob | None, name: str, changes: dict[str, Any], source: str) -> PeriodicJob:
    unknown = set(changes) - _FIELDS
    if unknown:
        raise ScheduleError(f"schedule entry {name!r} in {source}: unknown keys {sorted(unknown)}")
    if job is None:
        missing = {"actor", "trigger"} - set(changes)
        if missing:
            raise ScheduleError(f"schedule entry {name!r} in {source}: a new entry needs {sorted(missing)}")
        job = PeriodicJob(name, changes["actor"], changes["trigger"])
    if "args" in changes:
        changes = {**changes, "args": tuple(changes["args"])}
    return replace(job, **changes)


def validate(jobs: list[PeriodicJob]) -> None:
    """Fail at start-up, naming the entry, on a bad trigger, unknown actor or bad arguments."""
    from workers.job_spec import EnqueueError, JobSpec, validate_spec

    for job in jobs:
        if not _NAME.match(job.name):
            raise ScheduleError(f"schedule entry {job.name!r}: names are letters, digits, '_', '-', '.'")
        job.build_trigger()
        try:
            validate_spec(JobSpec(job.actor, job.args, job.kwargs, queue=job.queue))
        except EnqueueError as exc:
            raise ScheduleError(f"schedule entry {job.name!r}: {exc}") from None
        if job.grace_s <= 0:
            raise ScheduleError(f"schedule entry {job.name!r}: grace_s must be positive")


def tick_key(name: str, fire_time: datetime) -> str:
    """The dedup key of one tick: the same in every scheduler process."""
    return f"cron:{name}:{fire_time.astimezone(UTC).isoformat()}"
