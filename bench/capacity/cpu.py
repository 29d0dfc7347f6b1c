"""CPU by role (bench/support/cpu.py), with the database's backends split by whose they are: the
enqueuer's (the bench process's enqueue connections), the bench's own polls, the workers'.

The bench process connects with PGAPPNAME = ENQUEUER_APP (its monitor connection with MONITOR_APP)
and the workers with WORKER_APP, so pg_stat_activity's application_name tells a backend's client.
"""

from __future__ import annotations

import psycopg

from bench.support.cpu import CpuMeter

ENQUEUER_APP = "skyport-bench-enqueuer"
MONITOR_APP = "skyport-bench-monitor"
WORKER_APP = "skyport-bench-worker"
# The postgres role's parts.
BACKENDS = {"pg enqueuer": ENQUEUER_APP, "pg monitor": MONITOR_APP}
PG_WORKERS = "pg workers"

BACKENDS_BY_APP = "SELECT pid, application_name FROM pg_stat_activity WHERE datname = %s"

Snapshot = dict[str, dict[int, float]]


class SplitMeter(CpuMeter):
    def __init__(self, worker_pids: list[int], dbname: str, redis_port: int | None, conn: psycopg.Connection):
        super().__init__(worker_pids, dbname, redis_port)
        self.dbname = dbname
        self.conn = conn

    def snapshot(self) -> Snapshot:
        snap = super().snapshot()
        apps = dict(self.conn.execute(BACKENDS_BY_APP, (self.dbname,)).fetchall())
        postgres = snap["postgres"]
        for role, app in BACKENDS.items():
            snap[role] = {pid: cpu for pid, cpu in postgres.items() if apps.get(pid) == app}
        named = set(BACKENDS.values())
        snap[PG_WORKERS] = {pid: cpu for pid, cpu in postgres.items() if apps.get(pid) not in named}
        return snap


def cpu_seconds(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds of each role between two snapshots (a process new since `before` counts from
    zero; one gone by `after` is not counted)."""
    return {
        role: sum(cpu - before.get(role, {}).get(pid, 0.0) for pid, cpu in procs.items())
        for role, procs in after.items()
    }
