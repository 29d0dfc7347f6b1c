"""A bench's processes: a command in a process group of its own with its output in a log file,
a process's children, fields of /proc files, a free port, waiting for an HTTP answer."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The product's command line as a bench starts it (`skyport web`, `skyport worker`, ...).
SKYPORT = [sys.executable, "-m", "skyport"]


class Workers:
    """A worker command in a process group of its own, its output in a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.argv = argv
        self.env = {**os.environ, **env, "PYTHONPATH": str(REPO)}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.spawned_epoch_s = 0.0
        self.spawned_at = 0.0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.spawned_epoch_s, self.spawned_at = time.time(), time.monotonic()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"workers exited with {self.proc.returncode}:\n{self.log_tail()}")

    def peak_rss_kib(self) -> list[int]:
        """VmHWM of each worker process (the children of the main process)."""
        return (
            [kib_field(f"/proc/{pid}/status", "VmHWM") for pid in children(self.proc.pid)]
            if self.proc
            else []
        )

    def stop(self, grace_s: float = 30.0) -> None:
        """SIGTERM to the group (a graceful shutdown), SIGKILL to whatever is left."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # The command name (field 2) may hold spaces; the parent pid follows its ')'.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def kib_field(path: str, field_name: str) -> int:
    """A `Name:   1234 kB` field of a /proc file."""
    for line in Path(path).read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout_s}s")
