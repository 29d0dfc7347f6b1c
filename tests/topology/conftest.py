"""Fixtures of the topology suite: one test network per run (a bridge and three host namespaces:
tests/topology/network.py), a private PostgreSQL on the bridge's first address and a private
Redis on its second (tests/topology/servers.py), a migrated template database; and per test a
`Cluster`: a database copied from the template, a Redis namespace, workers started in the hosts,
and every cut healed and every worker killed afterwards, pass or fail.

Without root, `ip` or the right to make namespaces the tests skip, and fail when CI is set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import psycopg
import pytest
import redis
from psycopg import sql

import config
import tests.actors
import tests.topology.actors  # declared here too: the test process enqueues them
from db import pool
from tests.conftest import ON_CI
from tests.support import REPO, postgres_bindir, scalar
from tests.topology import leftovers
from tests.topology.network import Host, Network, remaining, unavailable_reason
from tests.topology.servers import BridgePostgres, BridgeRedis, HostWorker
from tests.topology.views import activity
from tests.topology.waiting import wait_until

HOSTS = 3
TEMPLATE = "skyport_topology_tpl"
# The workers' clocks (tests/support.py's FAST_LIFELINE_ENV, plus a short republish: a message a
# cut-off host fetched but cannot claim is published again for the others after 1 s).
WORKER_ENV = {
    "SKYPORT_HEARTBEAT_INTERVAL_S": "0.3",
    "SKYPORT_WORKER_DEAD_AFTER_S": "2",
    "SKYPORT_RELAY_SWEEP_S": "0.2",
    "SKYPORT_REPUBLISH_AFTER_S": "1",
    "SKYPORT_EXTRA_MODULES": "tests.actors,tests.topology.actors",
}
# The private server directly, whatever the developer's environment says (a pooler in front).
DIRECT = {"DATABASE_DIRECT_URL": "", "SKYPORT_DATABASE_POOLER": "none"}


def _unavailable(message: str) -> None:
    if ON_CI:
        pytest.fail(f"{message} (CI is set: a missing capability fails the run)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def network() -> Iterator[Network]:
    reason = unavailable_reason()
    if reason:
        _unavailable(f"cannot build the test network: {reason}")
    leftovers.sweep()  # what runs killed before their finalizers left behind
    try:
        net = Network(hosts=HOSTS, services=2)
    except RuntimeError as exc:  # e.g. no bridge or veth support in this kernel
        _unavailable(f"cannot build the test network: {exc}")
    leftovers.note(net.id)
    try:
        yield net
    finally:
        net.close()
        assert not remaining(net.id), f"network left behind: {remaining(net.id)}"
        leftovers.forget(net.id)


@dataclass(frozen=True)
class Servers:
    postgres: BridgePostgres
    redis: BridgeRedis


@pytest.fixture(scope="session")
def servers(network: Network) -> Iterator[Servers]:
    if postgres_bindir() is None:
        _unavailable("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    if shutil.which("redis-server") is None:
        _unavailable("no redis-server")
    with (
        BridgePostgres(network.services[0], str(network.subnet)) as pg,
        BridgeRedis(network.services[1]) as rds,
    ):
        postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        leftovers.note(
            network.id, pids=[[postmaster, "SIGQUIT"], [rds.proc.pid, "SIGKILL"]], dirs=[str(pg.dir), rds.dir]
        )
        url = pg.url(TEMPLATE)
        done = subprocess.run(
            [sys.executable, "-m", "skyport", "db", "upgrade"],
            env={**os.environ, **DIRECT, "DATABASE_URL": url, "PYTHONPATH": str(REPO)},
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"skyport db upgrade failed:\n{done.stdout}{done.stderr}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(tests.actors.EFFECTS_DDL)
        yield Servers(pg, rds)


@dataclass
class Cluster:
    """One test's database, Redis namespace and workers on the test network."""

    network: Network
    servers: Servers
    database_url: str
    namespace: str
    workers: list[HostWorker] = field(default_factory=list)

    @property
    def hosts(self) -> list[Host]:
        return self.network.hosts

    @property
    def postgres_address(self) -> str:
        return self.servers.postgres.address

    @property
    def redis_address(self) -> str:
        return self.servers.redis.address

    def worker_env(self) -> dict[str, str]:
        return {
            **WORKER_ENV,
            **DIRECT,
            "DATABASE_URL": self.database_url,
            "BROKER_URL": self.servers.redis.url,
            "SKYPORT_BROKER_NAMESPACE": self.namespace,
        }

    def start_worker(self, host: Host, threads: int = 2, queues: list[str] | None = None) -> HostWorker:
        worker = HostWorker(host, self.worker_env(), threads=threads, queues=queues)
        self.workers.append(worker)
        return worker.start()

    def wait_ready(self, *workers: HostWorker, timeout_s: float = 30) -> dict[HostWorker, str]:
        """Until each worker's process heartbeats; returns each one's worker_id."""

        def ids() -> dict[HostWorker, str] | None:
            found = {w: self.worker_id(w) for w in workers}
            return found if all(found.values()) else None

        return wait_until(ids, timeout_s, "the workers to heartbeat", self.report)

    def worker_id(self, worker: HostWorker) -> str | None:
        pids = list(worker.pids())
        return scalar(
            self.database_url,
            "SELECT max(worker_id) FROM workers WHERE pid = ANY(%s)",
            (pids,),
        )

    def report(self) -> str:
        """The database's sessions and jobs, and every worker's log: for a failed wait."""
        logs = [f"--- worker in {w.host.name} ({w.host.address}) ---\n{w.output()}" for w in self.workers]
        return "\n".join([activity(self.database_url), *logs])

    def close(self) -> None:
        """Kill every worker (frozen ones too: SIGKILL needs no SIGCONT), then heal every cut."""
        try:
            for worker in self.workers:
                with contextlib.suppress(Exception):
                    worker.__exit__()
        finally:
            self.network.heal_all()


@pytest.fixture
def cluster(network: Network, servers: Servers, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A fresh database and Redis namespace; the test process's DATABASE_URL and BROKER_URL point
    at them (so `enqueue()` works from the root namespace)."""
    name = f"skyport_topo_{uuid.uuid4().hex[:8]}"
    admin = servers.postgres.url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(TEMPLATE))
        )
    c = Cluster(network, servers, servers.postgres.url(name), f"skyport-topo-{uuid.uuid4().hex[:8]}")
    for key, value in c.worker_env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("REDIS_URL", raising=False)
    config.get.cache_clear()
    try:
        yield c
    finally:
        try:
            c.close()
            pool.close()
        finally:
            config.get.cache_clear()
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            client = redis.Redis.from_url(servers.redis.url)
            client.flushall()  # the run's own server: nothing else lives there
            client.close()
