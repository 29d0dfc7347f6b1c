"""Shared scaffolding of the notification dispatch and quote expiry benches: a database of the
bench's own (created, migrated to heads, dropped), machine facts."""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
from psycopg import sql

ADMIN_URL = os.environ.get("SKYPORT_BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def db_url(name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user, host, port = info.get("user", "postgres"), info.get("host", "127.0.0.1"), info.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{name}"


@contextlib.contextmanager
def bench_database(prefix: str) -> Iterator[str]:
    """A migrated database of the bench's own; DATABASE_URL points at it; dropped at the end."""
    import config
    from db import migrate

    name = f"skyport_bench_{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = db_url(name)
    os.environ["DATABASE_URL"] = url
    config.get.cache_clear()
    try:
        migrate.upgrade("heads", url)
        yield url
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def machine(url: str) -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    mem = next(
        (
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        ),
        "0",
    )
    with psycopg.connect(url) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    print(
        f"machine: {os.cpu_count()} cpus ({cpu}), {int(mem) / 1024 / 1024:.1f} GiB, "
        f"Python {platform.python_version()}, PostgreSQL {pg}"
    )
    print(f"load: {uptime()}")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
