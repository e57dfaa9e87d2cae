"""Hosts of their own for the fault suite: every server and platform process in a network
namespace of its own, all on one bridge, so that the links between them can be cut and made
lossy (``nft`` in the namespace of the host whose traffic is dropped).

    10.77.0.1     this host: the suite, its simulated devices, HAProxy in front of the gateways
    10.77.0.11-13 Kafka nodes 1-3         10.77.0.20    PostgreSQL
    10.77.0.31-   gateways                10.77.0.41-   stream workers

Only these addresses of the project's own test network are ever used. Needs root, ``ip``
(iproute2) and ``nft`` (nftables). This kernel has no ``netem`` queueing discipline, so a link
is made lossy by dropping a share of its packets at random (``numgen``), not delayed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from devstack.settings import Host

_FIRST = {"kafka": 11, "postgres": 20, "gateway": 31, "worker": 41}
"""Where each role's hosts start: kafka-2 is .12, worker-1 is .41; up to 9 of a role (one
PostgreSQL)."""


class NetworkError(RuntimeError):
    """The test network cannot be made here (not root, a tool missing)."""


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetworkError(f"`{' '.join(argv)}` failed: {result.stderr.strip()}")


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a test network lives: its subnet (this host is its first address), its bridge
    and the prefix of its namespaces' names. Two layouts never touch each other."""

    subnet: str = "10.77.0.0/24"
    bridge: str = "iotf0"
    prefix: str = "iotf-"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)

    @property
    def this_host(self) -> str:
        return str(self.network.network_address + 1)

    def address_for(self, name: str) -> str:
        """Host ``name``'s address (``kafka``, ``kafka-3``, ``postgres``, ``gateway-1``)."""
        role, _, number = name.partition("-")
        most = 1 if role == "postgres" else 9
        if role not in _FIRST or number not in ("", *map(str, range(1, most + 1))):
            raise ValueError(f"no address for a host named {name!r}")
        return str(self.network.network_address + _FIRST[role] + int(number or 1) - 1)


FAULTS = Layout()
"""The fault suite's network."""


def require_tools() -> None:
    """Raises NetworkError saying what to do when this machine cannot make the network."""
    if os.geteuid() != 0:
        raise NetworkError("hosts of their own need root (network namespaces): run as root")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            raise NetworkError(f"`{tool}` is missing: run `make test-tools` (Debian's {package})")


@dataclass
class HostNetwork:
    """The bridge and the hosts made on it so far (by name), removed whole by ``remove``."""

    layout: Layout = FAULTS
    hosts: dict[str, Host] = field(default_factory=dict)

    @classmethod
    def create(cls, names: Iterable[str], layout: Layout = FAULTS) -> HostNetwork:
        """A fresh network (whatever an earlier run left is removed first) with ``names``."""
        require_tools()
        remove_leftovers(layout)
        bridge, prefix_length = layout.bridge, layout.network.prefixlen
        _run("ip", "link", "add", bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{layout.this_host}/{prefix_length}", "dev", bridge)
        _run("ip", "link", "set", bridge, "up")
        network = cls(layout)
        for name in names:
            network.add(name)
        return network

    def add(self, name: str) -> Host:
        """Host ``name``: a namespace wired to the bridge through a veth pair."""
        if name in self.hosts:
            return self.hosts[name]
        address = self.layout.address_for(name)
        namespace = self.layout.prefix + name
        outside = f"{self.layout.bridge}-{address.rsplit('.', 1)[1]}"
        # a namespace deleted just before is torn down by the kernel in the background,
        # its veth with it: one still there is deleted now
        subprocess.run(["ip", "link", "delete", outside], capture_output=True, check=False)
        _run("ip", "netns", "add", namespace)
        _run(
            "ip", "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", namespace
        )
        _run("ip", "link", "set", outside, "master", self.layout.bridge, "up")
        inside = ("ip", "netns", "exec", namespace)
        cidr = f"{address}/{self.layout.network.prefixlen}"
        _run(*inside, "ip", "addr", "add", cidr, "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        self.hosts[name] = Host(namespace, address, self.layout.subnet)
        return self.hosts[name]

    def servers(self) -> tuple[tuple[str, Host], ...]:
        """The servers' hosts, for ``DevStackSettings.server_hosts``."""
        return tuple(
            (name, host)
            for name, host in self.hosts.items()
            if name.startswith(("kafka", "postgres"))
        )

    def cut(
        self,
        name: str,
        peers: Iterable[str],
        *,
        tag: str,
        inbound: bool = True,
        outbound: bool = True,
    ) -> None:
        """Host ``name`` stops exchanging packets with ``peers`` (host names), silently
        (dropped, as by a failed link): what it sends to them (``outbound``) and what they
        send it (``inbound``). One direction only is an asymmetric partition."""
        addresses = self._addresses(peers)
        rules = []
        if outbound:
            rules.append(
                f"chain output {{ type filter hook output priority 0; ip daddr {addresses} drop; }}"
            )
        if inbound:
            rules.append(
                f"chain input {{ type filter hook input priority 0; ip saddr {addresses} drop; }}"
            )
        self._table(name, tag, rules)

    def lossy(self, name: str, peers: Iterable[str], percent: int, *, tag: str) -> None:
        """``percent`` of the packets between host ``name`` and ``peers``, both ways, lost."""
        addresses = self._addresses(peers)
        lose = f"numgen random mod 100 < {percent} drop"
        chains = [
            _chain("output", "daddr", addresses, lose),
            _chain("input", "saddr", addresses, lose),
        ]
        self._table(name, tag, chains)

    def heal(self, name: str, tag: str) -> None:
        """Removes what ``cut`` or ``lossy`` did to host ``name`` under ``tag``."""
        _run(
            "ip", "netns", "exec", self.hosts[name].namespace, "nft", "delete", "table", "inet", tag
        )

    def _addresses(self, peers: Iterable[str]) -> str:
        return "{ " + ", ".join(self.hosts[peer].address for peer in peers) + " }"

    def _table(self, name: str, tag: str, chains: list[str]) -> None:
        ruleset = f"table inet {tag} {{\n" + "\n".join(chains) + "\n}\n"
        result = subprocess.run(
            ["ip", "netns", "exec", self.hosts[name].namespace, "nft", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise NetworkError(f"nft refused the rules for {name}: {result.stderr.strip()}")

    def remove(self) -> None:
        remove_leftovers(self.layout)
        self.hosts.clear()


def _chain(hook: str, field: str, addresses: str, verdict: str) -> str:
    """An nft chain on ``hook`` applying ``verdict`` to packets whose ``field`` (saddr,
    daddr) is one of ``addresses``."""
    return (
        f"chain {hook} {{ type filter hook {hook} priority 0; ip {field} {addresses} {verdict}; }}"
    )


def remove_leftovers(layout: Layout) -> None:
    """Deletes every namespace of ``layout``'s network and its bridge (their veths go too)."""
    listed = subprocess.run(
        ["ip", "-o", "netns", "list"], capture_output=True, text=True, check=False
    )
    for line in listed.stdout.splitlines():
        namespace = line.split()[0] if line.split() else ""
        if namespace.startswith(layout.prefix):
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, check=False)
    with contextlib.suppress(NetworkError):
        _run("ip", "link", "show", layout.bridge)
        _run("ip", "link", "delete", layout.bridge)
