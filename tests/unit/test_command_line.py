"""The command line's shape: a version, a help text for every command and flag, and every job
family's commands reached through the registry."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import pytest

import skyport
from jobs import registry
from jobs.listing import when
from skyport.main import build_parser, main


def _parsers(
    parser: argparse.ArgumentParser, path: str = "skyport"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"skyport {skyport.__version__}"


def test_every_command_and_flag_has_a_help_text() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [f"{path} {c.dest}" for c in action._choices_actions if not c.help]
            elif not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"no help text: {missing}"


def test_every_family_with_commands_is_on_the_command_line() -> None:
    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    probe = argparse.ArgumentParser().add_subparsers()
    for family in registry.FAMILIES:
        if family.commands is None:
            continue
        family.commands(probe)
        assert set(probe.choices) <= set(top.choices), family.name


def test_a_group_of_commands_alone_prints_its_own_help(capsys: pytest.CaptureFixture[str]) -> None:
    for path, parser in _parsers(build_parser()):
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if path == "skyport" or not groups:
            continue
        args = path.split()[1:]
        assert main(args) == 2, path
        out = capsys.readouterr().out
        assert out.startswith(f"usage: {path} "), (path, out[:80])
        assert set(groups[0].choices) <= set(out.split()), path


def test_times_are_printed_in_utc() -> None:
    two_hours_east = timezone(timedelta(hours=2))
    assert when(datetime(2026, 12, 7, 3, 30, 15, 123456, tzinfo=two_hours_east)) == "2026-12-07 01:30:15"
    assert when(datetime(2026, 12, 7, 3, 30, 15)) == "2026-12-07 03:30:15" and when(None) == "-"


def test_a_worker_for_a_queue_no_actor_declares_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker", "-Q", "default", "no-such-queue"]) == 1
    err = capsys.readouterr().err
    assert "unknown queue no-such-queue" in err and "default" in err
