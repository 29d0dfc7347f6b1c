"""PostgreSQL and Redis servers of the topology tests' own, each listening on its own address of
the test network's bridge (tests/topology/network.py) and on a free port, with data in a
temporary directory; the machine's shared servers are never touched. And `skyport worker`
processes run inside a host's network namespace."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import redis

from tests.support import PrivatePostgres, PrivateRedis, WorkerProcess, wait_for
from tests.topology.network import Host


class BridgePostgres(PrivatePostgres):
    """A private PostgreSQL cluster listening on `address` only, trusting the test subnet."""

    def __init__(self, address: str, subnet: str) -> None:
        super().__init__()
        self.address = address
        self.subnet = subnet

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@{self.address}:{self.port}/{dbname}"

    def init(self) -> BridgePostgres:
        super().init()
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet} trust\n")
        return self

    def start(self) -> BridgePostgres:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses={self.address} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        return self


class BridgeRedis(PrivateRedis):
    """A private redis-server listening on `address` only (no persistence)."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address

    @property
    def url(self) -> str:
        return f"redis://{self.address}:{self.port}/0"

    def start(self) -> BridgeRedis:
        argv = ["redis-server", "--port", str(self.port), "--bind", self.address, "--save", ""]
        argv += ["--appendonly", "no", "--protected-mode", "no", "--dir", self.dir]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(host=self.address, port=self.port, socket_timeout=2)

        def pings() -> bool:
            try:
                return bool(client.ping())
            except redis.RedisError:
                return False

        wait_for(pings, 10, what="the private redis to start")
        client.close()
        return self

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> BridgeRedis:
        try:
            return self.start()
        except BaseException:
            self.stop()  # a server that never answered is not left running
            raise


# What a worker logs when the ledger refuses an outcome it writes (workers/middleware.py).
OUTCOME_IGNORED = "ignored (cancelled or recovered meanwhile)"


class HostWorker(WorkerProcess):
    """`skyport worker -p 1` inside a host's network namespace (`ip netns exec` execs the
    worker, so the process group is the worker's own: freezing it freezes the whole host)."""

    def __init__(self, host: Host, env: dict[str, str], threads: int = 2, queues: list[str] | None = None):
        args = ["--queues", *queues] if queues else None
        super().__init__(processes=1, threads=threads, env=env, args=args)
        self.host = host
        self.argv = ["ip", "netns", "exec", host.netns, *self.argv]

    def pids(self) -> set[int]:
        """The worker's processes (its Dramatiq main process and the worker it forked)."""
        if not self.alive():
            return set()
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.getpgid(int(entry.name)) == self.proc.pid:
                        found.add(int(entry.name))
                except ProcessLookupError:
                    continue
        return found

    def freeze(self) -> None:
        os.killpg(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.killpg(self.proc.pid, signal.SIGCONT)

    def ignored_outcomes(self) -> int:
        """Outcomes this worker wrote that the ledger refused (the job was no longer its own)."""
        return self.log_count(OUTCOME_IGNORED)

    def log_count(self, *texts: str) -> int:
        """Lines of the worker's log that contain every one of `texts`."""
        lines = Path(self.log.name).read_text(errors="replace").splitlines()
        return sum(all(t in line for t in texts) for line in lines)
