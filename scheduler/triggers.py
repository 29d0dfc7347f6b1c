"""Cron on a time zone's wall clock, firing once per matching wall-clock time across DST.

APScheduler 3.11's CronTrigger with a zoneinfo zone fires a daily 02:30 job twice on the night
the clocks go back (02:30 CEST and 02:30 CET), and asked again from just after the second fire
it returns the same time. This trigger evaluates the crontab on naive wall-clock time (with
APScheduler's own CronTrigger, in UTC where there is no DST), then places each wall-clock time
on the real time line: a repeated time runs once (its first occurrence), a time that does not
exist (the clocks jumped over it) runs right after the gap. So a daily job runs once a day.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

_TINY = timedelta(microseconds=1)
# Enough to step over every repeated wall-clock time of a DST change.
_MAX_STEPS = 8


class WallClockCronTrigger(BaseTrigger):
    def __init__(self, crontab: str, timezone: tzinfo) -> None:
        self.timezone = timezone
        self.crontab = crontab
        self._cron = CronTrigger.from_crontab(crontab, timezone=UTC)  # raises ValueError when invalid

    def _wall(self, moment: datetime) -> datetime:
        return moment.astimezone(self.timezone).replace(tzinfo=UTC)

    def _real(self, wall: datetime) -> datetime:
        # fold=0: the first of two repeated times; for a time inside a gap, the offset before the
        # change, which lands right after the gap.
        return wall.replace(tzinfo=self.timezone, fold=0).astimezone(UTC)

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime | None:
        wall_now = self._wall(now)
        wall_prev = self._wall(previous_fire_time) if previous_fire_time else None
        for _ in range(_MAX_STEPS):
            wall_next = self._cron.get_next_fire_time(wall_prev, wall_now)
            if wall_next is None:
                return None
            real = self._real(wall_next.replace(tzinfo=None))
            if previous_fire_time is None or real > previous_fire_time:
                return real.astimezone(self.timezone)
            # The wall clock went back (an hour repeats): that time already ran; look further.
            wall_prev, wall_now = wall_next, wall_next + _TINY
        return None

    def __str__(self) -> str:
        return f"cron[{self.crontab}] wall clock {self.timezone}"

    def __repr__(self) -> str:
        return f"<WallClockCronTrigger ({self.crontab!r}, timezone={self.timezone!r})>"
