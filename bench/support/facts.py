"""What a bench prints around its figures: the machine, the servers and the code it ran on, the
load average, and the end of a run (its logs removed unless kept)."""

from __future__ import annotations

import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis
from psycopg import sql

from bench.support.probes import Speed, measure
from bench.support.procs import REPO, kib_field

# Server settings that change the ledger path's figures, printed with the machine facts.
PG_SETTINGS_SHOWN = ("synchronous_commit", "autovacuum", "shared_buffers")


def machine_facts(database_url: str, redis_url: str, speed: Speed | None = None) -> dict[str, str]:
    """The machine, its servers and their speed today (`speed`: measured now when not given)."""
    import dramatiq

    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")), "?"
    )
    mem_kib = kib_field("/proc/meminfo", "MemTotal")
    with psycopg.connect(database_url, autocommit=True) as conn:
        pg_version = conn.execute("SHOW server_version").fetchone()[0]
        pg_settings = ", ".join(
            f"{name}={conn.execute(sql.SQL('SHOW {}').format(sql.Identifier(name))).fetchone()[0]}"
            for name in PG_SETTINGS_SHOWN
        )
    redis_version = redis.Redis.from_url(redis_url).info("server")["redis_version"]
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model,
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "postgresql": f"{pg_version} ({pg_settings})",
        "redis": redis_version,
        "speed": (speed or measure(database_url, redis_url)).summary(),
        "python": platform.python_version(),
        "dramatiq": dramatiq.__version__,
        "psycopg": psycopg.__version__,
        "code": code_version(),
    }


def code_version() -> str:
    """The commit, and whether the runtime (workers/, db/) differs from it in the working tree."""
    git = ["git", "-C", str(REPO)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "workers", "db"], capture_output=True).stdout
    return f"{commit.strip() or '?'}{' + uncommitted changes in workers/ or db/' if dirty else ''}"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def start_run(kind: str) -> tuple[str, Path, str]:
    """The start of a bench run: SIGTERM cleans up like Ctrl-C (workers stopped, databases dropped,
    Redis keys deleted), a tag for its databases and namespaces, a folder for its logs, and the
    header (the command, the date, the load before). Returns (tag, log folder, load before)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tag = secrets.token_hex(4)
    log_dir = Path(tempfile.mkdtemp(prefix=f"skyport-{kind}-"))
    load_before = load_average()
    print(f"skyport {kind} {tag}: {' '.join(sys.argv)}")
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}; load average before: {load_before}")
    return tag, log_dir, load_before


def finish_run(log_dir: Path, *, keep: bool, load_before: str) -> None:
    """The end of a bench run: the load it left, and its logs removed unless kept."""
    print(f"\nload average after: {load_average()} (before: {load_before})")
    if keep:
        print(f"logs kept in {log_dir}")
    else:
        shutil.rmtree(log_dir, ignore_errors=True)
