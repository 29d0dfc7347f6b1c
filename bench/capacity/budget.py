"""One run of the connection-budget bench: worker processes on a given DATABASE_URL (the server, or
a PgBouncer in front of it), N jobs end to end, the server's connections sampled, the logs read."""

from __future__ import annotations

import collections
import json
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from bench.capacity.ledger import Ledger
from bench.support.procs import SKYPORT, Workers
from bench.support.timing import wait_until_complete

SAMPLE_S = 0.1
WARMUP_JOBS = 500
ACTIVITY = """
SELECT count(*), count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE state = 'idle in transaction')
  FROM pg_stat_activity WHERE datname = %s
"""
# Log lines with the same text but for ids, numbers and addresses count as one kind.
VARYING = re.compile(r"0x[0-9a-f]+|\b[0-9a-f]{8,}\b|\d+")


@dataclass
class Peaks:
    connections: int = 0  # backends of the bench's database (the bench's own two included)
    active: int = 0
    idle_in_transaction: int = 0
    pooler_servers: int = 0  # PgBouncer: server connections of the pool
    pooler_waiting: int = 0  # PgBouncer: clients waiting for a server connection
    pooler_max_wait_s: float = 0.0
    samples: int = 0


@dataclass
class RunResult:
    mode: str
    jobs: int
    seconds: float = float("nan")
    boot_s: float = float("nan")
    peaks: Peaks = field(default_factory=Peaks)
    levels: dict[str, int] = field(default_factory=dict)
    kinds: list[tuple[int, str]] = field(default_factory=list)  # (count, message) of warnings and errors
    failure: str | None = None


class Sampler(threading.Thread):
    """Samples pg_stat_activity (and PgBouncer's SHOW POOLS) every SAMPLE_S until stopped."""

    def __init__(self, direct_url: str, dbname: str, admin_url: str | None) -> None:
        super().__init__(name="connection-sampler", daemon=True)
        self.conn = psycopg.connect(direct_url, autocommit=True)
        self.admin = (
            psycopg.connect(admin_url, autocommit=True, cursor_factory=psycopg.ClientCursor)
            if admin_url
            else None
        )
        self.dbname = dbname
        self.peaks = Peaks()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(SAMPLE_S):
            self.sample()

    def sample(self) -> None:
        p = self.peaks
        total, active, in_tx = self.conn.execute(ACTIVITY, (self.dbname,)).fetchone()
        p.connections, p.active = max(p.connections, total), max(p.active, active)
        p.idle_in_transaction = max(p.idle_in_transaction, in_tx)
        p.samples += 1
        if self.admin is not None:
            cur = self.admin.execute("SHOW POOLS")
            names = [d.name for d in cur.description]
            for row in cur.fetchall():
                pool = dict(zip(names, row, strict=True))
                if pool["database"] != self.dbname:
                    continue
                servers = sum(
                    int(pool[k]) for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login")
                )
                p.pooler_servers = max(p.pooler_servers, servers)
                p.pooler_waiting = max(p.pooler_waiting, int(pool["cl_waiting"]))
                wait_s = int(pool["maxwait"]) + int(pool.get("maxwait_us", 0)) / 1e6
                p.pooler_max_wait_s = max(p.pooler_max_wait_s, wait_s)

    def stop(self) -> Peaks:
        self.stopping.set()
        self.join(5)
        self.conn.close()
        if self.admin is not None:
            self.admin.close()
        return self.peaks


def run_mode(
    mode: str, ledger: Ledger, env: dict[str, str], args, log_path: Path, admin_url: str | None
) -> RunResult:
    """Workers on `env`'s DATABASE_URL; N jobs in enqueue_many batches until all succeeded."""
    result = RunResult(mode, args.jobs)
    log_end = None
    ledger.use(env)
    ledger.reset()
    ledger.monitor.execute("DELETE FROM workers")  # a previous mode's rows, so that readiness is this one's
    argv = [*SKYPORT, "worker", "-p", str(args.processes), "-t", str(args.threads)]
    workers = Workers(argv, {**env, "LOG_FORMAT": "json"}, log_path)
    sampler = Sampler(ledger.direct_url, ledger.dbname, admin_url)
    sampler.start()
    workers.start()
    try:
        result.boot_s = _wait_ready(ledger, workers, args.processes, args.timeout)
        ledger.send(args.kind, "batch", WARMUP_JOBS, args.batch)
        wait_until_complete(ledger, WARMUP_JOBS, time.monotonic() + args.timeout, workers.check_alive)
        ledger.reset(compact=False)
        started = time.monotonic()
        ledger.send(args.kind, "batch", args.jobs, args.batch)
        finished = wait_until_complete(ledger, args.jobs, started + args.timeout, workers.check_alive)
        result.seconds = finished - started
        log_end = log_path.stat().st_size  # the lines before the shutdown
    except (RuntimeError, TimeoutError, psycopg.Error) as exc:
        result.failure = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
    finally:
        result.peaks = sampler.stop()
        workers.stop()
    result.levels, result.kinds = scan_log(log_path, log_end)
    return result


def _wait_ready(ledger: Ledger, workers: Workers, processes: int, timeout_s: float) -> float:
    while ledger.scalar("SELECT count(*) FROM workers") < processes:
        workers.check_alive()
        if time.monotonic() - workers.spawned_at > timeout_s:
            raise TimeoutError(f"{processes} worker processes not registered within {timeout_s:g} s")
        time.sleep(0.1)
    return time.monotonic() - workers.spawned_at


def scan_log(path: Path, end: int | None, top: int = 6) -> tuple[dict[str, int], list[tuple[int, str]]]:
    """Lines per level (JSON lines; 'other' for anything else), and the commonest warnings and
    errors with ids and numbers blanked; up to byte `end` (the shutdown's lines left out), or all
    of it when the run failed."""
    levels: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[str] = collections.Counter()
    with path.open("rb") as log:
        text = log.read(end if end is not None else -1).decode(errors="replace")
    for line in text.splitlines():
        try:
            record = json.loads(line)
            level, text = record["level"], f"{record['logger']}: {record['message']}"
            if record.get("exception"):
                text += " | " + record["exception"].strip().splitlines()[-1]
        except (ValueError, KeyError, TypeError):
            level, text = "other", line
        levels[level] += 1
        if level in ("WARNING", "ERROR", "CRITICAL", "other"):
            kinds[VARYING.sub("#", text)[:160]] += 1
    return dict(levels), [(n, text) for text, n in kinds.most_common(top)]
