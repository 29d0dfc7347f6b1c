"""`skyport db upgrade | downgrade REV | current`: migrations."""

from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database migrations").add_subparsers(title="db commands", metavar="CMD")
    cmd = db.add_parser("upgrade", help="migrate to the newest schema (creates the database if missing)")
    cmd.set_defaults(run=_upgrade)
    cmd = db.add_parser("downgrade", help="migrate down to a revision ('base' for an empty schema)")
    cmd.add_argument("revision", help="the revision to end at ('base': no schema)")
    cmd.set_defaults(run=_downgrade)
    db.add_parser("current", help="print the schema revision").set_defaults(run=_current)


def _upgrade(args: argparse.Namespace) -> int:
    from db import migrate

    if migrate.create_database_if_missing():
        print("created the database")
    migrate.upgrade("heads")
    print(f"schema at {migrate.current_revision()}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from db import migrate

    migrate.downgrade(args.revision)
    print(f"schema at {migrate.current_revision() or 'base'}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from db import migrate

    current, head = migrate.current_revision(), migrate.head_revision()
    print(f"{current or 'base'}{' (head)' if current == head else f' (head is {head})'}")
    return 0
