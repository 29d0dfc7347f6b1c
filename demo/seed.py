"""`python -m demo seed`: demo data for every job family, so a newcomer sees each working.

The ledger's own demo (always): quick jobs, flaky jobs that retry and succeed, jobs that die (to
retry from the dashboard). Then each family's seeding (`FAMILY_SEEDS`): one family's failure is
reported and does not stop the others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import psycopg

from demo.actors import DEMO_FLAKY_ATTEMPTS
from demo.families import seed_notifications, seed_quotes, seed_shipments
from workers import JobSpec, enqueue_many

logger = logging.getLogger("skyport.demo")

# Demo jobs per kind.
DEFAULT_QUICK_JOBS = 30
DEFAULT_FLAKY_JOBS = 8
DEFAULT_DEAD_JOBS = 3

# (what, function): each family's demo seeding `f(conn, run) -> str` (a line to print).
FAMILY_SEEDS: tuple[tuple[str, Callable[[psycopg.Connection, str], str]], ...] = (
    ("quotes", seed_quotes),
    ("notifications", seed_notifications),
    ("shipments", seed_shipments),
)


def seed_ledger(conn: psycopg.Connection, run: str) -> list[str]:
    specs = [
        JobSpec("demo_work", kwargs={"order": i}, dedup_key=f"demo:{run}:work:{i}")
        for i in range(DEFAULT_QUICK_JOBS)
    ]
    specs += [
        JobSpec("demo_flaky", kwargs={"order": i, "failures": 1 + i % 2}, dedup_key=f"demo:{run}:flaky:{i}")
        for i in range(DEFAULT_FLAKY_JOBS)
    ]
    specs += [
        JobSpec(
            "demo_flaky",
            kwargs={"order": 100 + i, "failures": DEMO_FLAKY_ATTEMPTS},
            dedup_key=f"demo:{run}:dead:{i}",
        )
        for i in range(DEFAULT_DEAD_JOBS)
    ]
    specs.append(JobSpec("demo_reject", kwargs={"order": 999}, dedup_key=f"demo:{run}:reject"))
    specs += [JobSpec("demo_work", kwargs={"order": 1000 + i}, delay=30 * (i + 1)) for i in range(4)]
    refs = enqueue_many(specs, conn=conn, enqueued_by="cli")
    created = sum(r.created for r in refs)
    return [
        f"ledger: {created} demo jobs ({DEFAULT_FLAKY_JOBS} fail then succeed, "
        f"{DEFAULT_DEAD_JOBS + 1} end dead: retry them from the console and they succeed, "
        "4 scheduled over the next 2 minutes)"
    ]


def seed(conn: psycopg.Connection, run: str) -> list[str]:
    """Seed everything that exists; returns one line per part (what it did, or why it was skipped)."""
    lines = seed_ledger(conn, run)
    for what, fn in FAMILY_SEEDS:
        try:
            with conn.transaction():
                lines.append(f"{what}: {fn(conn, run)}")
        except Exception as exc:  # one family's failure must not stop the demo
            logger.exception("demo seed of %s failed", what)
            lines.append(f"{what}: demo seeding failed: {type(exc).__name__}: {exc}")
    return lines
