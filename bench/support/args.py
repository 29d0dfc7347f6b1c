"""Command-line options every benchmark that starts its own workers shares."""

from __future__ import annotations

import argparse
import os

# The server a bench makes its own database on, and the broker it makes its own namespace in.
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def add_server_options(p: argparse.ArgumentParser, *, logs: str | None = "the workers' logs") -> None:
    """--database-url, --redis-url (defaults: DATABASE_URL, BROKER_URL or REDIS_URL, else the
    local servers) and, unless `logs` is None (a bench that starts no processes), --keep-logs."""
    p.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
        help="server to use (the bench creates and drops a database of its own there)",
    )
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BROKER_URL") or os.environ.get("REDIS_URL", DEFAULT_REDIS_URL),
        help="Redis to use (the bench uses key namespaces of its own and deletes them)",
    )
    if logs is not None:
        p.add_argument("--keep-logs", action="store_true", help=f"keep {logs}")
