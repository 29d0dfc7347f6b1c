"""The day's speed of the servers, printed with the machine facts: the bench machine runs up to
about 2x faster or slower from one day to the next, so a figure is read against the round trips
measured the same day. Each probe runs before the bench starts its processes (unloaded)."""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
import redis
from psycopg import sql

PROBE_CALLS = 2000


@dataclass(frozen=True)
class Speed:
    select_ms: float  # a prepared `SELECT 1`, p50: the round trip to PostgreSQL
    commit_ms: float  # a one-row INSERT into a logged table that commits on its own, p50: with the WAL flush
    redis_ms: float  # an RPUSH of one small value, p50: the round trip to Redis
    redis_cpu_ms: float  # the Redis client's CPU per call (this process)

    def summary(self) -> str:
        return (
            f"p50 unloaded: SELECT 1 {self.select_ms:.3f} ms, one-row INSERT with its commit "
            f"{self.commit_ms:.3f} ms, Redis call {self.redis_ms:.3f} ms ({self.redis_cpu_ms:.3f} ms "
            "of client CPU)"
        )


def measure(database_url: str, redis_url: str, calls: int = PROBE_CALLS) -> Speed:
    """Probe the servers (about a second); the table and key it writes are removed."""
    table = sql.Identifier(f"skyport_bench_probe_{secrets.token_hex(4)}")
    with psycopg.connect(database_url, autocommit=True) as conn:
        select_ms = _p50_ms(lambda: conn.execute("SELECT 1", prepare=True).fetchone(), calls)
        conn.execute(sql.SQL("CREATE TABLE {} (id bigserial PRIMARY KEY, v int NOT NULL)").format(table))
        insert = sql.SQL("INSERT INTO {} (v) VALUES (1) RETURNING id").format(table)
        try:
            commit_ms = _p50_ms(lambda: conn.execute(insert, prepare=True).fetchone(), calls)
        finally:
            conn.execute(sql.SQL("DROP TABLE {}").format(table))
    client = redis.Redis.from_url(redis_url)
    key = f"skyport-bench-probe:{secrets.token_hex(4)}"
    try:
        cpu_before = time.process_time()
        redis_ms = _p50_ms(lambda: client.rpush(key, "x"), calls)
        redis_cpu_ms = (time.process_time() - cpu_before) / calls * 1000
    finally:
        client.delete(key)
        client.close()
    return Speed(select_ms, commit_ms, redis_ms, redis_cpu_ms)


def _p50_ms(call: Callable[[], object], calls: int) -> float:
    took = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        took.append(time.perf_counter() - start)
    return statistics.median(took) * 1000
