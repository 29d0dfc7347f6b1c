"""The measured windows of the capacity bench: N jobs of one kind, enqueued one way, run by workers
already running; the workers idle; and the prune of finished jobs with the VACUUM after it.

A job window starts from a compacted ledger (the previous jobs deleted, VACUUM FULL) and, unless
told otherwise, a CHECKPOINT, so every window pays the same full-page images: the first change of
each page after a checkpoint logs the whole page. It ends when the last job's row is `succeeded`;
the row counters are read once every backend has flushed its statistics, and the tables' sizes as
written (dead row versions included, as autovacuum has not run) and after VACUUM FULL (live rows).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.capacity import pgstats, waldump
from bench.capacity.cpu import SplitMeter, cpu_seconds
from bench.capacity.ledger import Ledger
from bench.support.procs import Workers
from bench.support.timing import wait_until_complete
from bench.throughput.paths import HISTORY_ACTOR


@dataclass
class Measured:
    """A block of work: seconds, CPU seconds by role, server-wide WAL, this database's WAL."""

    seconds: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)
    lsn_bytes: int = 0
    wal: waldump.WalShare | None = None


@dataclass
class Window:
    kind: str
    mode: str
    jobs: int
    run: Measured = field(default_factory=Measured)
    counts: pgstats.Counters = field(default_factory=pgstats.Counters)  # after - before
    stored_before: pgstats.Sizes | None = None
    stored_written: pgstats.Sizes | None = None
    stored_live: pgstats.Sizes | None = None

    def per_job(self, value: float) -> float:
        return value / self.jobs


@dataclass
class Prune:
    """`prune_finished` of `jobs` finished jobs (with their attempts), then a plain VACUUM."""

    jobs: int
    delete: Measured
    vacuum: Measured


class Bench:
    """What every window needs: the ledger, the running workers, the CPU meter, pg_waldump."""

    def __init__(
        self,
        ledger: Ledger,
        workers: Workers,
        meter: SplitMeter,
        *,
        checkpoint: bool,
        timeout_s: float,
        quiet_s: float,
    ) -> None:
        self.ledger = ledger
        self.workers = workers
        self.meter = meter
        self.checkpoint = checkpoint
        self.timeout_s = timeout_s
        self.quiet_s = quiet_s
        self.conn = ledger.monitor
        self.wal_reader = waldump.locate(self.conn)
        self.db_oid = waldump.database_oid(self.conn, ledger.dbname)

    def measure(self, action: Callable[[], object]) -> Measured:
        """Run `action`, with the WAL it writes kept for pg_waldump."""
        kept = (
            waldump.wal_kept(self.conn, f"{self.ledger.dbname}_wal")
            if self.wal_reader
            else contextlib.nullcontext()
        )
        m = Measured()
        with kept:
            lsn0, cpu0, t0 = pgstats.wal_lsn(self.conn), self.meter.snapshot(), time.monotonic()
            action()
            t1, cpu1, lsn1 = time.monotonic(), self.meter.snapshot(), pgstats.wal_lsn(self.conn)
            if self.wal_reader:
                m.wal = waldump.wal_of_database(self.wal_reader, lsn0, lsn1, self.db_oid)
        m.seconds, m.lsn_bytes = t1 - t0, pgstats.lsn_diff(self.conn, lsn1, lsn0)
        m.cpu_s = cpu_seconds(cpu0, cpu1)
        return m

    def window(self, kind: str, mode: str, jobs: int, batch: int) -> Window:
        w = Window(kind, mode, jobs)
        self.ledger.reset()
        before = pgstats.settled(self.conn, self.ledger.dbname, quiet_s=self.quiet_s)
        if self.checkpoint:
            self.conn.execute("CHECKPOINT")
        w.stored_before = pgstats.sizes(self.conn)

        def run() -> None:
            t0 = time.monotonic()
            self.ledger.send(kind, mode, jobs, batch)
            wait_until_complete(self.ledger, jobs, t0 + self.timeout_s, self.workers.check_alive)

        w.run = self.measure(run)
        inserted = ("jobs", 0, before.tables["jobs"][0] + jobs)
        after = pgstats.settled(self.conn, self.ledger.dbname, quiet_s=self.quiet_s, at_least=inserted)
        w.counts = after.minus(before)
        w.stored_written = pgstats.sizes(self.conn)
        self.ledger.compact()
        w.stored_live = pgstats.sizes(self.conn)
        return w

    def idle(self, seconds: float) -> Measured:
        """The workers running and no job."""
        self.ledger.reset()
        return self.measure(lambda: time.sleep(seconds))

    def prune(self) -> Prune:
        """The product's prune (workers.ledger.prune_finished) of the finished jobs the last window
        left, then VACUUM as autovacuum would run it. The history rows are kept out of it."""
        from workers import ledger as product_ledger

        self.conn.execute(
            "UPDATE jobs SET finished_at = now() + interval '1 day' WHERE actor = %s", (HISTORY_ACTOR,)
        )
        jobs = self.ledger.scalar("SELECT count(*) FROM jobs WHERE actor <> %s", (HISTORY_ACTOR,))
        if self.checkpoint:
            self.conn.execute("CHECKPOINT")
        delete = self.measure(lambda: product_ledger.prune_finished(self.conn, 0, 0))
        vacuum = self.measure(lambda: self.conn.execute("VACUUM jobs, job_attempts"))
        left = self.ledger.scalar("SELECT count(*) FROM jobs WHERE actor <> %s", (HISTORY_ACTOR,))
        if left:
            raise RuntimeError(f"prune_finished left {left} of {jobs} finished jobs")
        return Prune(jobs, delete, vacuum)
