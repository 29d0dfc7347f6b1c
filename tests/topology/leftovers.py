"""What a topology run owns, written down while it runs, so that a later run removes it when this
one died before its finalizers could (pytest killed with SIGKILL, a cancelled CI job).

One file per run (named by its network id) under the temporary directory: the run's pid, its
servers' pids (each with the signal that stops it) and directories; the workers die with the
network's namespaces (tests/topology/network.py, `remove_by_id`). `sweep()` handles only runs
whose pid is gone, so runs side by side never touch each other's network or servers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

from tests.topology import network

RUNS = Path(tempfile.gettempdir()) / "skyport-topology-runs"


def _file(run_id: str) -> Path:
    return RUNS / f"{run_id}.json"


def note(run_id: str, **things: Any) -> None:
    """Add to what run `run_id` (this process) owns: lists are extended, other values set."""
    RUNS.mkdir(exist_ok=True)
    path = _file(run_id)
    owned: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {"pid": os.getpid()}
    for key, value in things.items():
        owned[key] = owned.get(key, []) + value if isinstance(value, list) else value
    path.write_text(json.dumps(owned))


def forget(run_id: str) -> None:
    _file(run_id).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Remove what dead runs left behind; returns their ids."""
    swept = []
    for path in sorted(RUNS.glob("*.json")) if RUNS.exists() else []:
        try:
            owned = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if _alive(owned.get("pid", 0)):
            continue
        run_id = path.stem
        network.remove_by_id(run_id)
        for pid, name in owned.get("pids", []):  # SIGQUIT: PostgreSQL's immediate shutdown
            with contextlib.suppress(ProcessLookupError, PermissionError, AttributeError):
                os.kill(pid, getattr(signal, name))
        for directory in owned.get("dirs", []):
            shutil.rmtree(directory, ignore_errors=True)
        path.unlink(missing_ok=True)
        swept.append(run_id)
    return swept
