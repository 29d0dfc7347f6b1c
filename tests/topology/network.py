"""A private network of "hosts": a Linux bridge in the root namespace, one network namespace per
host with a veth into the bridge, and service addresses on the bridge (one per server, so a host
can be cut off from one server and not the others).

    root namespace                              skyh-<id>-1        skyh-<id>-2
    skyb-<id>  10.a.b.1 (PostgreSQL)            eth0 10.a.b.11     eth0 10.a.b.12
               10.a.b.2 (Redis)     <- veth ->  skyv<id>1           skyv<id>2

A cut is a route inside the host's namespace (`ip route add unreachable <server>/32`): the host's
packets to that server go nowhere, new connections fail at once ("No route to host"), and
established ones stall (TCP retransmits) until the route goes, as in a real partition; the other
server stays reachable. Names carry a random id, so two runs never collide; `close()` removes
everything (`remove_by_id` also what a killed run left: tests/topology/leftovers.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import uuid
from dataclasses import dataclass, field

# Subnets are drawn from here (a /24 each), skipping any that overlaps an address in use.
SUBNET_POOL = ipaddress.ip_network("10.200.0.0/13")
# Host n gets <subnet>.<HOST_BASE + n>; the servers get .1, .2, ...
HOST_BASE = 10


class NetworkUnavailable(Exception):
    """This machine cannot build the network (not root, no `ip`, namespaces refused)."""


def run_ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    probe = f"skyp-{uuid.uuid4().hex[:8]}"
    done = run_ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns add` refused: {done.stderr.strip()}"
    run_ip("netns", "del", probe, check=False)
    return None


def _free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.ip_interface(word).network
        for line in run_ip("-4", "-o", "addr", "show").stdout.splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    candidates = list(SUBNET_POOL.subnets(new_prefix=24))
    for subnet in random.sample(candidates, len(candidates)):
        if not any(subnet.overlaps(u) for u in used):
            return subnet
    raise RuntimeError(f"no free /24 left in {SUBNET_POOL}")


@dataclass
class Host:
    """One network namespace with an address on the bridge."""

    name: str
    netns: str
    veth: str
    address: str
    cuts: set[str] = field(default_factory=set)

    def cut(self, address: str) -> None:
        """From now on this host cannot reach `address` (its other routes stay)."""
        run_ip("route", "add", "unreachable", f"{address}/32", netns=self.netns)
        self.cuts.add(address)

    def heal(self, address: str | None = None) -> None:
        """Remove the cut to `address` (every cut when None)."""
        for cut in [address] if address else sorted(self.cuts):
            run_ip("route", "del", "unreachable", f"{cut}/32", netns=self.netns, check=False)
            self.cuts.discard(cut)


class Network:
    """The bridge, its service addresses and the hosts' namespaces (see the module's text)."""

    def __init__(self, hosts: int, services: int) -> None:
        self.id = uuid.uuid4().hex[:6]
        self.bridge = f"skyb-{self.id}"
        self.subnet = _free_subnet()
        self.services = [str(self.subnet[1 + i]) for i in range(services)]
        self.hosts: list[Host] = []
        try:
            self._build(hosts)
        except BaseException:
            self.close()
            raise

    def _build(self, hosts: int) -> None:
        run_ip("link", "add", self.bridge, "type", "bridge")
        for address in self.services:
            run_ip("addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", self.bridge)
        run_ip("link", "set", self.bridge, "up")
        for n in range(1, hosts + 1):
            host = Host(
                name=f"host{n}",
                netns=f"skyh-{self.id}-{n}",
                veth=f"skyv{self.id}{n}",
                address=str(self.subnet[HOST_BASE + n]),
            )
            run_ip("netns", "add", host.netns)
            self.hosts.append(host)
            run_ip("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.netns)
            run_ip("link", "set", host.veth, "master", self.bridge, "up")
            run_ip("addr", "add", f"{host.address}/{self.subnet.prefixlen}", "dev", "eth0", netns=host.netns)
            run_ip("link", "set", "eth0", "up", netns=host.netns)
            run_ip("link", "set", "lo", "up", netns=host.netns)

    def heal_all(self) -> None:
        for host in self.hosts:
            host.heal()

    def close(self) -> None:
        """Kill what still runs in the namespaces, remove them (their veth ends go with them) and
        the bridge; never raises."""
        remove_by_id(self.id)


def remaining(network_id: str) -> list[str]:
    """Links and namespaces of this id still present (none after `close()`)."""
    links = run_ip("-o", "link", "show").stdout
    namespaces = run_ip("netns", "list").stdout
    found = {
        word.rstrip(":").split("@")[0]
        for word in (links + namespaces).split()
        if network_id in word and word.startswith(("skyb-", "skyv", "skyh-"))
    }
    return sorted(found)


def remove_by_id(network_id: str) -> None:
    """Remove every namespace and link of this id, killing the processes inside first; never raises."""
    with contextlib.suppress(Exception):
        for name in remaining(network_id):
            if name.startswith("skyh-"):
                for pid in run_ip("netns", "pids", name, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(pid), signal.SIGKILL)
                run_ip("netns", "del", name, check=False)
        for name in remaining(network_id):
            run_ip("link", "del", name, check=False)
