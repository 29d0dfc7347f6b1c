"""The soak's processes: worker slots kept running by a supervisor (a slot whose `skyport worker`
exits is started again at once), the random kill -9, and every process's RSS over time.

RSS is tracked per incarnation: one process (pid and kernel start time) from the first sample that
saw it to the last. A killed worker's replacement is a new incarnation with its own warm-up, so a
fresh process is never compared with a warmed-up one (see `rss_growth`).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.support.procs import Workers, children, kib_field

# How often the supervisor looks for exited slots.
SUPERVISE_EVERY_S = 0.2


@dataclass
class Kill:
    at: float  # monotonic
    wall: float  # time.time()
    slot: str
    pid: int  # the Dramatiq worker process killed
    siblings: list[int]  # the slot's other worker processes (its `skyport worker` stops them too)
    running_jobs: list[int]  # the ledger's running jobs of the killed process at the kill

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.siblings]


@dataclass
class Restart:
    at: float  # monotonic, when the supervisor saw the exit and started the slot again
    slot: str
    exit_code: int | None


class Slot:
    """One supervised command (`skyport worker`, the scheduler, the web process)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.process = Workers(argv, env, log_dir / f"{name}.log")

    @property
    def pid(self) -> int | None:
        proc = self.process.proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def children(self) -> list[int]:
        pid = self.pid
        return sorted(children(pid)) if pid else []


class Supervisor(threading.Thread):
    """Starts the worker slots again as soon as their process exits (as systemd would)."""

    def __init__(self, slots: list[Slot], stop: threading.Event) -> None:
        super().__init__(name="soak-supervisor", daemon=True)
        self.slots = slots
        self.stop_event = stop
        self.restarts: list[Restart] = []

    def run(self) -> None:
        while not self.stop_event.wait(SUPERVISE_EVERY_S):
            for slot in self.slots:
                proc = slot.process.proc
                if proc is not None and proc.poll() is not None:
                    self.restarts.append(Restart(time.monotonic(), slot.name, proc.returncode))
                    slot.process.start()


class Killer(threading.Thread):
    """Every `every_s` (+-25 %), kill -9 one Dramatiq worker process of a random slot."""

    def __init__(
        self, slots: list[Slot], every_s: float, database_url: str, stop: threading.Event, seed: int
    ) -> None:
        super().__init__(name="soak-killer", daemon=True)
        self.slots = slots
        self.every_s = every_s
        self.database_url = database_url
        self.stop_event = stop
        self.rng = random.Random(seed)
        self.kills: list[Kill] = []

    def run(self) -> None:
        while not self.stop_event.wait(self.every_s * self.rng.uniform(0.75, 1.25)):
            candidates = [(slot, pid) for slot in self.slots for pid in slot.children()]
            if not candidates:
                continue
            slot, pid = self.rng.choice(candidates)
            siblings = [p for p in slot.children() if p != pid]
            running = self._running_jobs(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                self.kills.append(Kill(time.monotonic(), time.time(), slot.name, pid, siblings, running))

    def _running_jobs(self, pid: int) -> list[int]:
        """The jobs the ledger says this process is running (worker ids are host:pid:random)."""
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT id FROM jobs WHERE state = 'running' AND split_part(worker_id, ':', 2) = %s",
                    (str(pid),),
                ).fetchall()
        except psycopg.Error:
            return []
        return [r[0] for r in rows]


# ---- RSS -----------------------------------------------------------------------------------------


@dataclass
class Incarnation:
    role: str  # "worker1", "worker1/child", "scheduler", "web"
    pid: int
    first_seen: float  # monotonic
    samples: list[tuple[float, int]] = field(default_factory=list)  # (monotonic s, VmRSS KiB)

    @property
    def last_seen(self) -> float:
        return self.samples[-1][0]

    def latest_kib(self) -> int:
        return self.samples[-1][1]


def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time): tells a reused pid from the old process."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _rss_kib(pid: int) -> int | None:
    try:
        return kib_field(f"/proc/{pid}/status", "VmRSS") or None
    except OSError:
        return None


class RssSampler(threading.Thread):
    """Every `every_s`, VmRSS of each slot's process and of its children."""

    def __init__(self, slots: list[Slot], every_s: float, stop: threading.Event) -> None:
        super().__init__(name="soak-rss", daemon=True)
        self.slots = slots
        self.every_s = every_s
        self.stop_event = stop
        self.incarnations: dict[tuple[int, int], Incarnation] = {}
        self.lock = threading.Lock()

    def run(self) -> None:
        while True:
            self.sample()
            if self.stop_event.wait(self.every_s):
                return

    def sample(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            pid = slot.pid
            if pid is None:
                continue
            for role, p in [(slot.name, pid)] + [(f"{slot.name}/child", c) for c in children(pid)]:
                ticks, rss = _start_ticks(p), _rss_kib(p)
                if ticks is None or rss is None:
                    continue
                with self.lock:
                    inc = self.incarnations.setdefault((p, ticks), Incarnation(role, p, now))
                    inc.samples.append((now, rss))

    def current(self, max_age_s: float) -> list[Incarnation]:
        """Incarnations seen in the last `max_age_s` seconds, by role."""
        cutoff = time.monotonic() - max_age_s
        with self.lock:
            alive = [i for i in self.incarnations.values() if i.last_seen >= cutoff]
        return sorted(alive, key=lambda i: (i.role, i.pid))

    def all(self) -> list[Incarnation]:
        with self.lock:
            return sorted(self.incarnations.values(), key=lambda i: (i.first_seen, i.role))


@dataclass(frozen=True)
class Growth:
    incarnation: Incarnation
    first_kib: float | None  # mean of the first window after warm-up
    last_kib: float | None  # mean of the last window (before `until`)
    judged: bool  # lived long enough: warm-up plus two whole windows

    @property
    def ratio(self) -> float | None:
        return self.last_kib / self.first_kib - 1 if self.first_kib and self.last_kib else None


def rss_growth(inc: Incarnation, warmup_s: float, window_s: float, until: float) -> Growth:
    """Mean RSS of [first seen + warm-up, + window) against (end - window, end], where end is the
    last sample at or before `until` (the load's end, or the process's death before it)."""
    samples = [(t, kib) for t, kib in inc.samples if t <= until]
    start = inc.first_seen + warmup_s
    end = samples[-1][0] if samples else inc.first_seen
    if end - start < 2 * window_s:
        return Growth(inc, None, None, False)
    first = [kib for t, kib in samples if start <= t < start + window_s]
    last = [kib for t, kib in samples if end - window_s < t <= end]
    return Growth(inc, _mean(first), _mean(last), bool(first and last))


def _mean(values: list[int]) -> float | None:
    return statistics.fmean(values) if values else None
