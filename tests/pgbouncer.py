"""A PgBouncer of the test's (or benchmark's) own, in transaction pooling mode, on a free port.

Debian's `pgbouncer` package provides the binary; when it is missing, `ensure_pgbouncer()` installs
it (`apt-get install pgbouncer`, as root). The server it fronts is given by URL; every database
name is passed through (`* = host=... port=...`), so a URL through the pooler differs from the
direct one only by its port. Clients are not authenticated (`auth_type = any`): every server
connection logs in as the server URL's user, as the local servers trust it. Stopped, its folder goes.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from tests import debian

# Where Debian installs the binary (also found on PATH).
DEBIAN_BINARY = "/usr/sbin/pgbouncer"
# Server connections per (user, database) pair unless the caller asks for another size.
DEFAULT_POOL_SIZE = 20


class PgBouncerUnavailable(Exception):
    """No pgbouncer binary and it could not be installed; the message says why."""


def pgbouncer_binary() -> str | None:
    return shutil.which("pgbouncer") or (DEBIAN_BINARY if Path(DEBIAN_BINARY).exists() else None)


def ensure_pgbouncer() -> str:
    """The pgbouncer binary, installed from Debian's package when missing (root only)."""
    try:
        debian.install("pgbouncer", lambda: pgbouncer_binary() is not None)
    except debian.InstallFailed as exc:
        raise PgBouncerUnavailable(str(exc)) from exc
    found = pgbouncer_binary()
    assert found is not None  # install() checked it
    return found


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgBouncer:
    """`with PgBouncer(server_url) as bouncer: bouncer.url(database_url)`."""

    def __init__(
        self, server_url: str, *, pool_size: int = DEFAULT_POOL_SIZE, max_client_conn: int = 1000
    ) -> None:
        self.server = urlsplit(server_url)
        self.pool_size = pool_size
        self.max_client_conn = max_client_conn
        self.port = _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="skyport-pgbouncer-"))
        self.log = self.folder / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database_url: str) -> str:
        """`database_url` through this pooler (same user and database, the pooler's port)."""
        parts = urlsplit(database_url)
        user = f"{parts.username}@" if parts.username else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def _write_ini(self) -> Path:
        host, port = self.server.hostname or "127.0.0.1", self.server.port or 5432
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port} user={self.server.username or 'postgres'}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.folder}\n"
            "auth_type = any\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            f"max_client_conn = {self.max_client_conn}\n"
            # Tests make and drop a database each: idle server connections to them go soon, or
            # they would pile up past the server's max_connections.
            "server_idle_timeout = 5\n"
            # The ledger's statements (LISTEN aside) need nothing more: unknown startup
            # parameters that drivers send are ignored instead of refused.
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.log}\npidfile = {self.folder / 'pgbouncer.pid'}\n"
            "admin_users = postgres\n"
        )
        return ini

    def start(self) -> PgBouncer:
        binary = ensure_pgbouncer()
        # Debian's binary refuses to run as root unless told which user to become.
        user = ["-u", "postgres"] if os.geteuid() == 0 else []
        if user:
            shutil.chown(self.folder, "postgres")
        ini = self._write_ini()
        # PgBouncer logs every line to stderr as well as to its logfile: a pipe nobody reads
        # fills after about 64 KB of log and then blocks the whole pooler, so it goes to a file.
        with open(self.folder / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [binary, *user, str(ini)], stdout=subprocess.DEVNULL, stderr=stderr
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                psycopg.connect(self.url("postgresql://postgres@x/postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        said = self.log_text() or (self.folder / "stderr.log").read_text(errors="replace")
        raise PgBouncerUnavailable(f"pgbouncer did not start: {said[-800:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # immediate shutdown: clients are dropped
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
