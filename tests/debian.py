"""Debian packages the tests need (chromium, pgbouncer), installed on first use when the user is
root. Test processes may ask at once (pytest-xdist workers), and apt holds one lock for the whole
machine: the installs take turns behind a file lock, and apt waits for dpkg's lock instead of
failing on it (another apt may run outside the tests)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

LOCK_FILE = Path(tempfile.gettempdir()) / "skyport-tests-apt.lock"
APT_LOCK_WAIT_S = 600


class InstallFailed(Exception):
    """The package is missing and could not be installed; the message says why."""


def install(package: str, present: Callable[[], bool]) -> None:
    """Install Debian's `package` unless `present()` says it is there already."""
    if present():
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise InstallFailed(f"{package} is missing and this user cannot apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT_S}"]
    with LOCK_FILE.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if present():  # another test process installed it meanwhile
            return
        # A failed index update is not fatal: the install may still find the package.
        subprocess.run([*apt, "update", "-qq"], env=env, capture_output=True, text=True, timeout=900)
        done = subprocess.run(
            [*apt, "install", "-y", "-qq", package], env=env, capture_output=True, text=True, timeout=900
        )
    if done.returncode != 0:
        raise InstallFailed(f"apt-get install {package} failed: {done.stderr.strip()[-500:]}")
    if not present():
        raise InstallFailed(f"apt-get installed {package} but it is still missing")
