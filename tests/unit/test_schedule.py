import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

import config
from scheduler import state
from scheduler.runner import first_run_time
from scheduler.schedule import SCHEDULE, PeriodicJob, ScheduleError, load_schedule, tick_key, validate


def test_interval_ticks_are_aligned_so_every_scheduler_agrees() -> None:
    trigger = PeriodicJob("x", "ping", "every 30s").build_trigger()
    now = datetime(2026, 5, 1, 12, 0, 7, 123000, tzinfo=UTC)
    first = trigger.get_next_fire_time(None, now)
    assert first == datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)
    assert trigger.get_next_fire_time(first, first) == datetime(2026, 5, 1, 12, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("every 2s", 2), ("every 5m", 300), ("every 1h", 3600), ("every 1d", 86400), ("every 0.5s", 0.5)],
)
def test_every_units(text: str, seconds: float) -> None:
    assert PeriodicJob("x", "ping", text).period() == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("job", "message"),
    [
        (PeriodicJob("bad_cron", "ping", "61 * * * *"), "schedule entry 'bad_cron': invalid trigger"),
        (PeriodicJob("bad_words", "ping", "sometimes"), "schedule entry 'bad_words': invalid trigger"),
        (
            PeriodicJob("bad_zone", "ping", "every 1s", timezone="Mars/Olympus"),
            "schedule entry 'bad_zone': unknown time zone",
        ),
        (PeriodicJob("no_actor", "no_such_actor", "every 1s"), "schedule entry 'no_actor': unknown actor"),
        (
            PeriodicJob("bad_args", "ping", "every 1s", args=(1, 2, 3)),
            "schedule entry 'bad_args': invalid arguments",
        ),
        (PeriodicJob("bad:name", "ping", "every 1s"), "schedule entry 'bad:name': names are"),
    ],
)
def test_bad_entries_fail_validation_naming_the_entry(job: PeriodicJob, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        validate([job])


def _scheduler_config(environ: dict[str, str]) -> config.SchedulerConfig:
    return config.load(environ).scheduler


def test_the_shipped_schedule_is_valid() -> None:
    validate(list(SCHEDULE))


def test_environment_and_file_override_the_table(tmp_path: Path) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text(
        "[prune_jobs]\nenabled = false\n\n"
        '[extra]\nactor = "remember"\ntrigger = "every 2s"\nargs = ["x"]\ntimezone = "Europe/Berlin"\n'
    )
    jobs = {
        j.name: j
        for j in load_schedule(
            cfg=_scheduler_config(
                {
                    "SKYPORT_SCHEDULE_FILE": str(path),
                    "SKYPORT_SCHEDULE_LEDGER_LIFELINE": "every 10s",
                    "SKYPORT_SCHEDULE_EXTRA": "off",
                }
            )
        )
    }
    assert jobs["ledger_lifeline"].trigger == "every 10s"
    assert not jobs["prune_jobs"].enabled
    assert jobs["extra"] == PeriodicJob(
        "extra", "remember", "every 2s", args=("x",), timezone="Europe/Berlin", enabled=False
    )


def test_file_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "schedule.toml"
    path.write_text('[newcomer]\ntrigger = "every 2s"\n')
    with pytest.raises(ScheduleError, match=r"'newcomer'.*needs \['actor'\]"):
        load_schedule(cfg=_scheduler_config({"SKYPORT_SCHEDULE_FILE": str(path)}))
    path.write_text('[prune_jobs]\ntriger = "every 2s"\n')
    with pytest.raises(ScheduleError, match=r"'prune_jobs'.*unknown keys \['triger'\]"):
        load_schedule(cfg=_scheduler_config({"SKYPORT_SCHEDULE_FILE": str(path)}))


def test_wall_clock_cron_runs_skipped_times_after_the_gap_and_repeated_times_once() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    trigger = PeriodicJob("n", "ping", "30 2 * * *", timezone="Europe/Berlin").build_trigger()
    spring = trigger.get_next_fire_time(None, datetime(2026, 3, 29, 0, 0, tzinfo=berlin))
    assert spring.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST, after the gap
    autumn = trigger.get_next_fire_time(None, datetime(2026, 10, 25, 0, 0, tzinfo=berlin))
    assert autumn.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # the first 02:30
    again = trigger.get_next_fire_time(autumn, autumn + timedelta(minutes=61))  # during the second 02:30
    assert again.astimezone(UTC) == datetime(2026, 10, 26, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize("days", [(2026, 3, 27, 2026, 4, 2), (2026, 10, 23, 2026, 10, 29)])
def test_daily_cron_fires_once_a_day_across_dst_changes(days: tuple[int, ...]) -> None:
    """Berlin springs forward on 2026-03-29 (02:30 does not exist) and falls back on 2026-10-25
    (02:30 happens twice); a job at 02:30 local time still runs exactly once each day."""
    berlin = ZoneInfo("Europe/Berlin")
    trigger = PeriodicJob("nightly", "ping", "30 2 * * *", timezone="Europe/Berlin").build_trigger()
    start = datetime(*days[:3], tzinfo=berlin)
    end = datetime(*days[3:], tzinfo=berlin)
    fires, previous, now = [], None, start
    for _ in range(100):  # a pinned clock: ask the trigger, jump to its answer
        fire = trigger.get_next_fire_time(previous, now)
        if fire >= end:
            break
        fires.append(fire)
        previous, now = fire, fire + timedelta(microseconds=1)
    else:
        raise AssertionError(f"the trigger does not move forward: {fires[-3:]}")
    local_days = [f.astimezone(berlin).date() for f in fires]
    assert len(local_days) == len(set(local_days)) == (end - start).days
    assert all(b - a >= timedelta(hours=23) for a, b in itertools.pairwise(fires))


def test_first_run_time_resumes_after_the_newest_tick_in_the_ledger() -> None:
    job = PeriodicJob("x", "ping", "every 10s")
    now = datetime(2026, 5, 1, 12, 1, 3, tzinfo=UTC)
    last = datetime(2026, 5, 1, 12, 0, 20, tzinfo=UTC)
    assert first_run_time(job, last, now) == datetime(2026, 5, 1, 12, 0, 30, tzinfo=UTC)  # missed: catch up
    assert first_run_time(job, None, now) == datetime(2026, 5, 1, 12, 1, 10, tzinfo=UTC)
    recent = datetime(2026, 5, 1, 12, 1, 0, tzinfo=UTC)
    assert first_run_time(job, recent, now) == datetime(2026, 5, 1, 12, 1, 10, tzinfo=UTC)


def test_tick_keys_carry_the_fire_time_in_utc() -> None:
    fire = datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/London"))
    key = tick_key("nightly", fire)
    assert key == "cron:nightly:2026-03-29T01:30:00+00:00"
    assert state.tick_time(key) == fire
