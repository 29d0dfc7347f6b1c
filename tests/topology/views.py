"""Read-only looks at a topology test's database: which host ran what, and the ledger rows a late
write must leave alone."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import psycopg


def _rows(database_url: str, query: str, params: object = None) -> list[tuple]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        return conn.execute(query, params).fetchall()


def states(database_url: str, jobs: Sequence[int]) -> Counter[str]:
    return Counter(
        s for (s,) in _rows(database_url, "SELECT state FROM jobs WHERE id = ANY(%s)", (list(jobs),))
    )


def all_in(database_url: str, jobs: Sequence[int], state: str) -> bool:
    return states(database_url, jobs) == Counter({state: len(jobs)})


def held_by(database_url: str, jobs: Sequence[int], worker_id: str) -> list[int]:
    """The jobs running (claimed) under this worker id."""
    return [
        i
        for (i,) in _rows(
            database_url,
            "SELECT id FROM jobs WHERE id = ANY(%s) AND state = 'running' AND worker_id = %s ORDER BY id",
            (list(jobs), worker_id),
        )
    ]


def succeeded_by(database_url: str, jobs: Sequence[int]) -> dict[int, str]:
    """Each succeeded job's worker, from its succeeded attempt."""
    return dict(
        _rows(
            database_url,
            "SELECT job_id, worker_id FROM job_attempts WHERE job_id = ANY(%s) AND outcome = 'succeeded'",
            (list(jobs),),
        )
    )


def outcomes(database_url: str, jobs: Sequence[int]) -> dict[int, list[tuple[str, str]]]:
    """Each job's attempts as (worker_id, outcome), in order."""
    found: dict[int, list[tuple[str, str]]] = {j: [] for j in jobs}
    for job, worker, outcome in _rows(
        database_url,
        "SELECT job_id, worker_id, outcome FROM job_attempts WHERE job_id = ANY(%s) ORDER BY job_id, attempt",
        (list(jobs),),
    ):
        found[job].append((worker, outcome))
    return found


def ledger_rows(database_url: str, jobs: Sequence[int]) -> tuple[list[tuple], list[tuple]]:
    """The jobs' rows and their attempts, every column a late write could touch."""
    ids = list(jobs)
    rows = _rows(
        database_url,
        "SELECT id, state, attempts, worker_id, message_id, started_at, finished_at, eta, last_error,"
        " dedup_lock FROM jobs WHERE id = ANY(%s) ORDER BY id",
        (ids,),
    )
    attempts = _rows(
        database_url,
        "SELECT job_id, attempt, worker_id, outcome, started_at, finished_at, error FROM job_attempts"
        " WHERE job_id = ANY(%s) ORDER BY job_id, attempt",
        (ids,),
    )
    return rows, attempts


def effect_counts(database_url: str, like: str = "%") -> dict[str, int]:
    return dict(
        _rows(database_url, "SELECT key, count(*) FROM effects WHERE key LIKE %s GROUP BY key", (like,))
    )


def client_addresses(database_url: str) -> set[str]:
    """Where this database's sessions come from (each host's namespace has its own address)."""
    return {
        str(a)
        for (a,) in _rows(
            database_url,
            "SELECT client_addr FROM pg_stat_activity"
            " WHERE datname = current_database() AND client_addr IS NOT NULL",
        )
    }


def activity(database_url: str) -> str:
    """The database's sessions (from where, doing what, blocked by whom) and jobs by state and
    worker: what a failed wait needs to be read."""
    sessions = _rows(
        database_url,
        "SELECT pid, client_addr, application_name, state, wait_event_type, wait_event,"
        " pg_blocking_pids(pid), now() - state_change, left(query, 40)"
        " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() ORDER BY pid",
    )
    jobs = _rows(
        database_url, "SELECT actor, state, worker_id, count(*) FROM jobs GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    workers = _rows(database_url, "SELECT worker_id, now() - heartbeat_at FROM workers ORDER BY 1")
    return "\n".join(
        ["sessions:", *map(str, sessions), "jobs:", *map(str, jobs), "workers:", *map(str, workers)]
    )
