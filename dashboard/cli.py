"""`skyport dashboard hash-password` and `skyport demo seed`."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from dashboard import auth
from workers.cli import CommandError


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    dash = subparsers.add_parser("dashboard", help="the ops dashboard").add_subparsers(
        title="dashboard commands", metavar="CMD"
    )
    cmd = dash.add_parser("hash-password", help="print an argon2 hash for SKYPORT_DASHBOARD_USERS")
    cmd.add_argument("--stdin", action="store_true", help="read the password from standard input")
    cmd.set_defaults(run=_hash_password)

    demo = subparsers.add_parser("demo", help="the demo").add_subparsers(title="demo commands", metavar="CMD")
    demo.add_parser("seed", help="create demo jobs and data for every job family").set_defaults(run=_seed)


def _hash_password(args: argparse.Namespace) -> int:
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


def _seed(args: argparse.Namespace) -> int:
    import workers.app  # noqa: F401 - every actor, the demo's included when loaded
    from dashboard.demo import seed
    from db import pool

    with pool.connection() as conn, conn.transaction():
        lines = seed.seed(conn, run=str(int(time.time())))
    for line in lines:
        print(f"demo: {line}")
    return 0
