"""`skyport db upgrade | downgrade REV | current`: migrations."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from skyport.errors import CommandError


def add_commands(sub: argparse._SubParsersAction) -> None:
    db = sub.add_parser("db", help="database migrations").add_subparsers(title="db commands", metavar="CMD")
    cmd = db.add_parser("upgrade", help="migrate to the newest schema (creates the database if missing)")
    cmd.set_defaults(run=_upgrade)
    cmd = db.add_parser("downgrade", help="migrate down to a revision ('base' for an empty schema)")
    cmd.add_argument("revision", help="the revision to end at ('base': no schema)")
    cmd.set_defaults(run=_downgrade)
    db.add_parser("current", help="print the schema revision").set_defaults(run=_current)


@contextmanager
def _alembic_says(hint: str = "") -> Iterator[None]:
    """Alembic's refusals (a revision it does not know: the database was migrated by a newer
    release, or a typo) end as one line, not a traceback."""
    from alembic.util import CommandError as AlembicError

    try:
        yield
    except AlembicError as exc:
        raise CommandError(f"{exc}{hint}") from None


def _upgrade(args: argparse.Namespace) -> int:
    from db import migrate

    if migrate.create_database_if_missing():
        print("created the database")
    with _alembic_says(" (was this database migrated by a newer release of Skyport?)"):
        migrate.upgrade("heads")
    print(f"schema at {migrate.current_revision()}")
    return 0


def _downgrade(args: argparse.Namespace) -> int:
    from db import migrate

    with _alembic_says():
        migrate.downgrade(args.revision)
    print(f"schema at {migrate.current_revision() or 'base'}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from db import migrate

    current, head = migrate.current_revision(), migrate.head_revision()
    print(f"{current or 'base'}{' (head)' if current == head else f' (head is {head})'}")
    return 0
