"""`skyport`: the command line of Skyport Jobs. `skyport --help` lists the commands, and
`skyport COMMAND --help` each one's flags."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence

import psycopg

import config
import skyport
from jobs.family import CommandFailed
from skyport.commands import console, db, flow, jobs, processes, schedule


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_command(build_parser, argv, prog="skyport", start=lambda: _start_sentry(argv))


def _start_sentry(argv: list[str]) -> None:
    """Sentry hooks into Dramatiq's Broker when it is built, and the parser builds it (every
    actor is declared to offer the families' commands): so Sentry starts first, named after the
    command (`worker`, `web`, `scheduler`, ...). It stays off without SENTRY_DSN."""
    from workers import observability

    observability.init_sentry(argv[0] if argv and not argv[0].startswith("-") else "cli")


def run_command(
    build: Callable[[], argparse.ArgumentParser],
    argv: Sequence[str] | None,
    *,
    prog: str,
    start: Callable[[], None] | None = None,
) -> int:
    """Parse and run one command. The configuration is checked first (then `start` runs); a
    malformed variable, an unreachable database or a failed command ends in one line on stderr,
    never a traceback."""
    try:
        config.get.cache_clear()
        config.get()
        if start is not None:
            start()
        parser = build()
        args = parser.parse_args(argv)
        if not hasattr(args, "run"):
            parser.print_help()
            return 2
        return args.run(args) or 0
    except config.ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"{prog}: cannot reach PostgreSQL (DATABASE_URL): {first}", file=sys.stderr)
        return 3
    except CommandFailed as exc:  # CommandError, and the families' commands' own
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`skyport jobs show 41 | head`): stop quietly, as `cat` does. Python's
        # final flush of stdout would fail again: it goes to /dev/null (Python's docs, "SIGPIPE").
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser() -> argparse.ArgumentParser:
    from jobs import registry  # declares every actor: after the configuration was checked

    parser = argparse.ArgumentParser(
        prog="skyport", description="Skyport Jobs: workers, scheduler, web, ops."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {skyport.__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in (db, processes, schedule, jobs, flow, console):
        module.add_commands(sub)
    for family in registry.FAMILIES:
        if family.commands is not None:
            family.commands(sub)
    _help_when_alone(parser)
    return parser


def _help_when_alone(parser: argparse.ArgumentParser) -> None:
    """A group of commands given alone (`skyport jobs`) prints its own help, not the top's."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                    sub.set_defaults(run=functools.partial(_print_help, sub))
                    _help_when_alone(sub)


def _print_help(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 2
