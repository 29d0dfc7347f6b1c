"""`skyport scheduler`: APScheduler (3.x) firing the schedule into the ledger.

Every tick is an `enqueue` with the dedup key `cron:<name>:<scheduled time, UTC ISO>` and a
dedup window longer than the period, so any number of schedulers may run (high availability):
the database lets exactly one enqueue per tick through, even after the first copy finished.
Missed ticks coalesce into one run; a tick later than its grace time is skipped and logged.
After a restart, ticks missed while down are found from the ledger (the entry's newest tick)
and follow the same rules.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler

from db import pool
from db.transient import retry_transient
from jobs import registry
from jobs.family import StartupError
from scheduler import schedule, state
from workers.enqueue import enqueue

logger = logging.getLogger("skyport.scheduler")


def fire(job: schedule.PeriodicJob, fire_time: datetime) -> bool:
    """Enqueue one tick; True if this call created it (False: another scheduler did, or ops
    switched the entry off)."""
    with pool.connection() as conn:
        if state.is_switched_off(conn, job.name):
            logger.info("tick %s of %s skipped: switched off by ops", fire_time.isoformat(), job.name)
            return False
    window = max(job.period(), timedelta(seconds=job.grace_s)) * 2
    ref = _enqueue_tick(job, fire_time, window)
    if ref.created:
        logger.info("tick %s of %s: job %s", fire_time.isoformat(), job.name, ref.id)
    else:
        logger.debug("tick %s of %s already enqueued as job %s", fire_time.isoformat(), job.name, ref.id)
    return ref.created


@retry_transient(max_delay_s=10.0)
def _enqueue_tick(job: schedule.PeriodicJob, fire_time: datetime, window: timedelta) -> Any:
    return enqueue(
        job.actor,
        job.args,
        job.kwargs,
        queue=job.queue,
        dedup_key=schedule.tick_key(job.name, fire_time),
        dedup_window=window,
        enqueued_by=f"scheduler:{job.name}",
    )


def run_now(job: schedule.PeriodicJob, by: str) -> Any:
    """One run outside the schedule (`skyport schedule run`, the dashboard's "run now")."""
    now = datetime.now(UTC)
    return enqueue(
        job.actor,
        job.args,
        job.kwargs,
        queue=job.queue,
        dedup_key=state.manual_key(job.name, now),
        enqueued_by=by,
    )


class LedgerExecutor(BaseExecutor):
    """Runs due ticks as enqueues. APScheduler's own `run_job` does not tell the function which
    scheduled time it runs for, and the tick's dedup key needs exactly that; the misfire rule is
    the same as APScheduler's."""

    def __init__(self, entries: dict[str, schedule.PeriodicJob]) -> None:
        super().__init__()
        self.entries = entries

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        entry = self.entries[job.id]
        events = []
        for run_time in run_times:  # one when coalescing
            late = datetime.now(UTC) - run_time
            if job.misfire_grace_time is not None and late > timedelta(seconds=job.misfire_grace_time):
                logger.warning(
                    "tick %s of %s skipped: %.1fs late, grace is %.0fs",
                    run_time.isoformat(),
                    entry.name,
                    late.total_seconds(),
                    entry.grace_s,
                )
                events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, "default", run_time))
                continue
            try:
                fire(entry, run_time)
                events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, "default", run_time))
            except Exception as exc:
                logger.exception("tick %s of %s could not be enqueued", run_time.isoformat(), entry.name)
                events.append(JobExecutionEvent(EVENT_JOB_ERROR, job.id, "default", run_time, exception=exc))
        self._run_job_success(job.id, events)


def first_run_time(job: schedule.PeriodicJob, last_fire: datetime | None, now: datetime) -> datetime | None:
    """Where this scheduler starts: the first tick after the entry's newest tick in the ledger
    (APScheduler then coalesces the missed ones and applies the grace time), or the next tick."""
    trigger = job.build_trigger()
    if last_fire is not None:
        missed = trigger.get_next_fire_time(last_fire, last_fire + timedelta(microseconds=1))
        if missed is not None and missed <= now:
            return missed
    return trigger.get_next_fire_time(None, now)


def build_scheduler(jobs: list[schedule.PeriodicJob]) -> BlockingScheduler:
    enabled = {job.name: job for job in jobs if job.enabled}
    scheduler = BlockingScheduler(
        timezone=UTC,
        executors={"default": LedgerExecutor(enabled)},
        job_defaults={"coalesce": True, "max_instances": 1},
    )
    with pool.connection() as conn:
        last = state.last_ticks(conn, list(enabled))
    now = datetime.now(UTC)
    for job in enabled.values():
        scheduler.add_job(
            _never_called,
            trigger=job.build_trigger(),
            id=job.name,
            name=job.name,
            misfire_grace_time=int(max(job.grace_s, 1)),
            next_run_time=first_run_time(job, last.get(job.name, {}).get("fire_time"), now),
        )
    return scheduler


def _never_called() -> None:  # pragma: no cover - LedgerExecutor fires ticks itself
    raise AssertionError("LedgerExecutor runs schedule entries")


def run_startup_hooks() -> None:
    """Each family's start-up work (partitions exist before any tick); a wrong family
    configuration stops the start-up, naming it, like a bad schedule does."""
    for family in registry.FAMILIES:
        for hook in family.startup:
            try:
                hook()
            except StartupError as exc:
                raise schedule.ScheduleError(str(exc)) from None


def _shut_down(scheduler: BlockingScheduler) -> None:
    # A second signal, or the start-up listener, may have been first.
    with contextlib.suppress(SchedulerNotRunningError):
        scheduler.shutdown(wait=False)


def main() -> int:
    """Validate the schedule (fail fast, naming the entry), then fire ticks until SIGTERM."""
    stopping = threading.Event()
    scheduler: BlockingScheduler | None = None

    def stop(signum: int, frame: Any) -> None:
        # Also during start-up (validation, partitions): then the scheduler never starts.
        logger.info("scheduler stopping (signal %d)", signum)
        stopping.set()
        if scheduler is not None and scheduler.running:
            # Not in the handler itself: it may interrupt the scheduler's own loop in this thread,
            # which holds the scheduler's reentrant locks, and the shutdown would remove the jobs
            # from under that loop (JobLookupError). Another thread waits for the loop's locks.
            threading.Thread(target=_shut_down, args=(scheduler,), name="scheduler-stop").start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    jobs = schedule.load_schedule()
    schedule.validate(jobs)
    run_startup_hooks()
    scheduler = build_scheduler(jobs)
    for job in jobs:
        logger.info("schedule: %-24s %-20s %s", job.name, job.trigger, "on" if job.enabled else "off")

    def stop_if_asked_while_starting(event: Any) -> None:
        # A signal inside start(), before the scheduler counts as running, only set `stopping`.
        if stopping.is_set():
            _shut_down(scheduler)

    scheduler.add_listener(stop_if_asked_while_starting, EVENT_SCHEDULER_STARTED)
    if not stopping.is_set():
        scheduler.start()
    logger.info("scheduler stopped")
    return 0
