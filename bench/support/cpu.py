"""CPU time spent by the processes of a benchmark phase, from /proc (Linux), by role.

Roles: the bench process itself (the enqueuer, and its completion polls), the workers (the
started processes and their descendants), the PostgreSQL backends connected to one database
(matched by their process title, `postgres: user dbname host(port) ...`), and the Redis server
on one port. On a machine with N cores, a system whose jobs cost C ms of CPU each in all
cannot go beyond N * 1000 / C jobs/s: that is what the split shows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS_S = os.sysconf("SC_CLK_TCK")
ROLES = ("enqueuer", "workers", "postgres", "redis")


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_S
    return 0.0


def _processes() -> list[tuple[int, int, bytes]]:
    """(pid, parent pid, command line) of every process."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            found.append((int(stat.parent.name), parent, (stat.parent / "cmdline").read_bytes()))
    return found


def descendants(roots: list[int], processes: list[tuple[int, int, bytes]]) -> set[int]:
    """The roots and every process below them."""
    found = set(roots)
    grew = True
    while grew:
        below = {pid for pid, parent, _ in processes if parent in found} - found
        found |= below
        grew = bool(below)
    return found


class CpuMeter:
    """Snapshots of the CPU seconds of each role's processes; `per_job_ms` of two snapshots."""

    def __init__(self, worker_pids: list[int], dbname: str, redis_port: int | None) -> None:
        self.worker_pids = worker_pids
        self.backend_mark = f" {dbname} ".encode()
        self.redis_mark = f":{redis_port}".encode() if redis_port else None

    def snapshot(self) -> dict[str, dict[int, float]]:
        processes = _processes()
        roles: dict[str, set[int]] = {
            "enqueuer": {os.getpid()},
            "workers": descendants(self.worker_pids, processes),
            "postgres": {
                pid
                for pid, _, cmd in processes
                if cmd.startswith(b"postgres: ") and self.backend_mark in cmd.replace(b"\0", b" ")
            },
            "redis": {
                pid
                for pid, _, cmd in processes
                if self.redis_mark and b"redis-server" in cmd and self.redis_mark in cmd
            },
        }
        return {role: {pid: process_cpu_s(pid) for pid in pids} for role, pids in roles.items()}

    @staticmethod
    def per_job_ms(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]], jobs: int
    ) -> dict[str, float]:
        """CPU ms per job of each role between two snapshots (a process new since `before` counts
        from zero; one gone by `after` is not counted)."""
        return {
            role: sum(cpu - before[role].get(pid, 0.0) for pid, cpu in after[role].items()) * 1000 / jobs
            for role in ROLES
        }
