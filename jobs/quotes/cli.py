"""`skyport quotes expire`: one expiry run in this process."""

from __future__ import annotations

import argparse


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    quotes = subparsers.add_parser("quotes", help="quotes").add_subparsers(
        title="quotes commands", metavar="CMD"
    )
    quotes.add_parser("expire", help="expire quoted quotes past valid_until now (one run)").set_defaults(
        run=_expire
    )


def _expire(args: argparse.Namespace) -> int:
    from db import pool
    from jobs.quotes.expiry import expire_configured

    with pool.connection() as conn:
        stats = expire_configured(conn)
    print(stats.summary())
    return 0
