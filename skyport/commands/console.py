"""`skyport dashboard hash-password`: a login's hash for SKYPORT_DASHBOARD_USERS."""

from __future__ import annotations

import argparse
import getpass
import sys

from skyport.errors import CommandError


def add_commands(sub: argparse._SubParsersAction) -> None:
    dash = sub.add_parser("dashboard", help="the ops dashboard").add_subparsers(
        title="dashboard commands", metavar="CMD"
    )
    cmd = dash.add_parser("hash-password", help="print an argon2 hash for SKYPORT_DASHBOARD_USERS")
    cmd.add_argument("--stdin", action="store_true", help="read the password from standard input")
    cmd.set_defaults(run=_hash_password)


def _hash_password(args: argparse.Namespace) -> int:
    from dashboard import auth

    if args.stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise CommandError("the passwords differ")
    if len(password) < 8:
        raise CommandError("use at least 8 characters")
    print(auth.hash_password(password))
    return 0
