"""Helpers for tests that run real processes: workers, private Redis and PostgreSQL servers, polling."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

REPO = Path(__file__).resolve().parent.parent
# Fast clocks for tests: beat every 0.3 s, dead after 2 s, relay sweep every 0.2 s.
FAST_LIFELINE_ENV = {
    "SKYPORT_HEARTBEAT_INTERVAL_S": "0.3",
    "SKYPORT_WORKER_DEAD_AFTER_S": "2",
    "SKYPORT_RELAY_SWEEP_S": "0.2",
    "SKYPORT_EXTRA_MODULES": "tests.actors",
}


def wait_for(
    predicate: Callable[[], Any], timeout_s: float = 30.0, interval_s: float = 0.05, what: str = "condition"
) -> Any:
    """Poll until `predicate()` is truthy; fail with `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scalar(database_url: str, query: str, params: Any = None) -> Any:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchone()[0]


def job_states(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return dict(conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall())


class SkyportProcess:
    """A `skyport ...` command in a process group of its own, with the test's environment."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **FAST_LIFELINE_ENV, "PYTHONPATH": str(REPO), **(env or {})}
        self.argv = [sys.executable, "-m", "skyport", *command]
        self.log = tempfile.NamedTemporaryFile(prefix="skyport-", suffix=".log", delete=False)  # noqa: SIM115
        self.proc: subprocess.Popen | None = None

    def start(self) -> SkyportProcess:
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, as a process manager would; returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"process did not stop within {timeout_s}s\n{self.output()}") from None

    def kill(self) -> None:
        """kill -9 of every process of the group."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-6000:]

    def _check_log(self) -> None:
        """No process of the product ever reports a prepared-statement error (it would behind a
        transaction pooler if it prepared statements)."""
        text = Path(self.log.name).read_text(errors="replace") if Path(self.log.name).exists() else ""
        assert "prepared statement" not in text, text[-3000:]

    def __enter__(self) -> SkyportProcess:
        return self if self.proc is not None else self.start()  # `with` on a started process: no second one

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.kill()
        try:
            self._check_log()
        finally:
            Path(self.log.name).unlink(missing_ok=True)


class WorkerProcess(SkyportProcess):
    """`skyport worker`."""

    def __init__(
        self,
        processes: int = 1,
        threads: int = 4,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
    ) -> None:
        super().__init__(["worker", "-p", str(processes), "-t", str(threads), *(args or [])], env)

    def wait_ready(self, database_url: str, count: int = 1, timeout_s: float = 30) -> None:
        """Until `count` worker processes heartbeat (all workers of this database)."""
        wait_for(
            lambda: scalar(database_url, "SELECT count(*) FROM workers") >= count,
            timeout_s,
            what=f"{count} worker(s) to heartbeat\n{self.output()}",
        )


class PrivateRedis:
    """A redis-server of the test's own on a free port (for tests that stop and restart it)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="skyport-redis-")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        client = redis.Redis(port=self.port)
        wait_for(lambda: _pings(client), 10, what="private redis to start")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def rabbitmq_queues(amqp_url: str) -> list[str]:
    """The queues of the URL's RabbitMQ virtual host (to see that messages really went through it)."""
    vhost = amqp_url.rsplit("/", 1)[1]
    return subprocess.run(
        ["rabbitmqctl", "list_queues", "-q", "-p", vhost, "name"], capture_output=True, text=True, timeout=60
    ).stdout.split()


def _pings(client: Any) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


def postgres_bindir() -> Path | None:
    """This machine's PostgreSQL server binaries (the newest of /usr/lib/postgresql/*/bin), if any."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "pg_ctl").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    return found[-1] if found else None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl in a temporary directory, on a free
    port), for tests that stop and restart it; the shared server is never touched. As root, the
    server runs as the `postgres` user (PostgreSQL refuses root)."""

    def __init__(self, bindir: Path | None = None) -> None:
        bindir = bindir or postgres_bindir()
        if bindir is None:
            raise FileNotFoundError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
        self.bindir = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="skyport-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _run(self, program: str, *args: str, timeout_s: float = 60) -> None:
        argv = [str(self.bindir / program), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        if done.returncode != 0:
            raise RuntimeError(f"{program} {args[-1]} failed: {done.stderr or done.stdout}\n{self.output()}")

    def init(self) -> PrivatePostgres:
        self._run(
            "initdb",
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        return self

    def start(self) -> PrivatePostgres:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast` (disconnects every client, checkpoints) or `-m immediate` (a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def __enter__(self) -> PrivatePostgres:
        try:
            return self.init().start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object) -> None:
        if self.running():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
