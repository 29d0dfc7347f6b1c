"""`skyport payments import --provider NAME FILE`: a gateway's event export (JSON lines) through the
intake's path, without signatures, audited (jobs/payments/importer.py)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from jobs.family import CommandFailed, command_user


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    payments = subparsers.add_parser("payments", help="payment-gateway events").add_subparsers(
        title="payments commands", metavar="CMD"
    )
    cmd = payments.add_parser(
        "import",
        help="import a gateway's event export (JSON lines, as its list-events API returns them)",
        description="Events already received change nothing; each line is read by the provider's "
        "adapter (PAYMENT_PROVIDER_<NAME>), without signature; audited as an ops action.",
    )
    cmd.add_argument("--provider", required=True, help="the provider name of the webhook URL")
    cmd.add_argument("file", help="the export, one event a line ('-': standard input)")
    cmd.set_defaults(run=_import)


@contextmanager
def _lines(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        with open(path, "rb") as handle:
            yield handle
    except OSError as exc:
        raise CommandFailed(f"cannot read {path}: {exc.strerror}") from None


def _import(args: argparse.Namespace) -> int:
    import config
    from db import pool
    from jobs.payments.importer import import_events

    if not config.get().payments.secrets_for(args.provider):
        raise CommandFailed(f"unknown provider {args.provider!r}: no PAYMENT_WEBHOOK_SECRET for it")
    with _lines(args.file) as lines, pool.connection() as conn:
        report = import_events(conn, args.provider, lines, command_user(), source=args.file)
    print(
        f"{report.lines} line(s): {report.accepted} event(s) accepted, {report.duplicates} already "
        f"received, {report.ignored} ignored, {len(report.refused)} line(s) refused"
    )
    for number, field, why in report.refused[:20]:
        print(f"  line {number}: {field}: {why}", file=sys.stderr)
    return 1 if report.refused else 0
