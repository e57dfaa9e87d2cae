"""Hosts of their own for the fault suite: every server and platform process in a network
namespace of its own, all on one bridge, so that the links between them can be cut, made lossy
and delayed (``nft`` and ``iptables`` in the namespace of the host whose traffic is dropped or
held).

    10.77.0.1     this host (the bridge)   10.77.0.2     the devices: the suite itself, its
                                           simulated devices, HAProxy in front of the gateways
    10.77.0.11-13 Kafka nodes 1-3          10.77.0.20    PostgreSQL
    10.77.0.31-   gateways                 10.77.0.41-   stream workers

Only these addresses of the project's own test network are ever used. Needs root, ``ip``
(iproute2), ``nft`` (nftables) and ``iptables``. This kernel has no ``netem`` queueing
discipline, so a link is made lossy by dropping a share of its packets at random (``numgen``),
and delayed in userspace: iptables queues its packets (``NFQUEUE``) to a program in the
namespace of the host each arrives at, which holds it for the delay (``tests.faults.delay``, on
NetfilterQueue, which ``make test-tools`` installs).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import ipaddress
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from devstack.settings import Host

_FIRST = {"devices": 2, "kafka": 11, "postgres": 20, "gateway": 31, "worker": 41}
"""Where each role's hosts start: kafka-2 is .12, worker-1 is .41; up to 9 of a role (one
PostgreSQL, one host of devices)."""
_SINGLE = frozenset({"postgres", "devices"})
_CLONE_NEWNET = 0x40000000

DELAY_MARGIN_S = 0.3
"""How long past its delay a heal waits before stopping a delay program: by then the program
has let through every packet it held when the rules feeding it went."""

DELAY_AT_MOST_S = 3600.0
"""A delay program's own bound unless its caller gives one: it stops by itself after that, so
it can never outlive the suite that started it (its link is then no longer delayed)."""

_PROJECT = Path(__file__).resolve().parents[2]


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
        most = 1 if role in _SINGLE else 9
        if role not in _FIRST or number not in ("", *map(str, range(1, most + 1))):
            raise ValueError(f"no address for a host named {name!r}")
        return str(self.network.network_address + _FIRST[role] + int(number or 1) - 1)


FAULTS = Layout()
"""The fault suite's network."""


def require_tools() -> None:
    """Raises NetworkError saying what to do when this machine cannot make the network."""
    if os.geteuid() != 0:
        raise NetworkError("hosts of their own need root (network namespaces): run as root")
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("iptables", "iptables")):
        if shutil.which(tool) is None:
            raise NetworkError(f"`{tool}` is missing: run `make test-tools` (Debian's {package})")


@dataclass(frozen=True, slots=True)
class _Hold:
    """Where a delay holds packets: on their arrival at host ``host`` from the addresses its
    iptables ``jump`` names, by ``program`` on netfilter queue ``queue`` (numbered per
    namespace), through iptables chain ``chain`` (a heal deletes exactly these)."""

    host: str
    program: subprocess.Popen[bytes]
    queue: int
    chain: str
    jump: str


@dataclass(frozen=True, slots=True)
class _Delay:
    """A delay on a host's links under a tag: how long, and where it holds their packets."""

    delay_ms: float
    holds: tuple[_Hold, ...]


@dataclass
class HostNetwork:
    """The bridge and the hosts made on it so far (by name), removed whole by ``remove``, and
    the delays on their links (by host and tag)."""

    layout: Layout = FAULTS
    hosts: dict[str, Host] = field(default_factory=dict)
    delays: dict[tuple[str, str], _Delay] = field(default_factory=dict)
    _home: int | None = None
    """While this process is in one of the hosts (``enter``): its own namespace, open."""

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
        root = self._at_bridge()
        subprocess.run([*root, "ip", "link", "delete", outside], capture_output=True, check=False)
        _run("ip", "netns", "add", namespace)
        _run(
            *root,
            *("ip", "link", "add", outside, "type", "veth"),
            *("peer", "name", "eth0", "netns", namespace),
        )
        _run(*root, "ip", "link", "set", outside, "master", self.layout.bridge, "up")
        inside = ("ip", "netns", "exec", namespace)
        cidr = f"{address}/{self.layout.network.prefixlen}"
        _run(*inside, "ip", "addr", "add", cidr, "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        self.hosts[name] = Host(namespace, address, self.layout.subnet)
        return self.hosts[name]

    def enter(self, name: str) -> None:
        """Moves this process into host ``name``: its calling thread, and so every socket it
        opens and every process and thread it starts from then on (call it before any other
        thread starts). Servers and processes launched into hosts of their own are not
        affected; ``leave`` comes back."""
        if self._home is not None:
            raise NetworkError("this process is in a host already")
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.hosts[name].namespace}", os.O_RDONLY)
        try:
            _setns(target)
        except OSError:
            os.close(home)
            raise
        finally:
            os.close(target)
        self._home = home

    def leave(self) -> None:
        """Back to the namespace ``enter`` left (nothing if it was not called)."""
        if self._home is None:
            return
        _setns(self._home)
        os.close(self._home)
        self._home = None

    def _at_bridge(self) -> tuple[str, ...]:
        """What runs a command in the namespace the bridge is in (this process's own, unless
        it entered a host)."""
        if self._home is None:
            return ()
        return ("nsenter", f"--net=/proc/{os.getpid()}/fd/{self._home}")

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
            rules.append(_chain("output", "daddr", addresses, "drop"))
        if inbound:
            rules.append(_chain("input", "saddr", addresses, "drop"))
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

    def delay(
        self,
        name: str,
        peers: Iterable[str],
        delay_ms: float,
        *,
        tag: str,
        loss_percent: int = 0,
        at_most_s: float = DELAY_AT_MOST_S,
    ) -> None:
        """Every packet between host ``name`` and ``peers``, both ways, held ``delay_ms`` (a
        round trip takes twice that longer), each direction's order kept, and ``loss_percent``
        of them lost as by ``lossy``. The link is delayed once this returns: the programs
        holding the packets listen before any rule feeds them. After ``at_most_s`` they stop
        by themselves and the link goes on undelayed (a bound for a suite that dies before its
        heal).

        Each packet is held where it arrives, in ``name``'s namespace or its peer's: held on
        its sender's host it would still count against its socket's send buffer, and TCP's
        small queues would send a packet or two per delay, a throttle rather than a delay.
        """
        if (name, tag) in self.delays:
            raise NetworkError(f"{name}'s links are delayed under {tag!r} already: heal first")
        peers = list(peers)
        arrivals = [(name, peers), *((peer, [name]) for peer in peers)]
        holds = tuple(
            self._hold(host, sources, delay_ms, tag, at_most_s) for host, sources in arrivals
        )
        try:
            for hold in holds:
                _await_listening(hold.program, hold.queue, self.hosts[hold.host].namespace)
            # the tag's table, empty without loss, so that ``heal`` removes it in every case
            if loss_percent:
                self.lossy(name, peers, loss_percent, tag=tag)
            else:
                self._table(name, tag, [])
            for hold in holds:
                self._feed(hold)
        except NetworkError:
            for hold in holds:
                with contextlib.suppress(NetworkError):
                    self._unfeed(hold)
            self._stop_holds(holds)
            with contextlib.suppress(NetworkError):
                self._nft(name, "delete", "table", "inet", tag)
            raise
        self.delays[(name, tag)] = _Delay(delay_ms, holds)

    def heal(self, name: str, tag: str) -> None:
        """Removes what ``cut``, ``lossy`` or ``delay`` did to host ``name`` under ``tag``.
        A delay's rules go first, then its programs once they let through all they held (the
        delay and a margin later), so a heal loses no packet. A delay program that failed
        meanwhile (its link then went on undelayed) is told once all is removed."""
        delayed = self.delays.pop((name, tag), None)
        failures = self._undelay(delayed) if delayed is not None else []
        self._nft(name, "delete", "table", "inet", tag)
        if failures:
            raise NetworkError(f"the delay on {name}'s links failed: {'; '.join(failures)}")

    def _hold(
        self, host: str, sources: list[str], delay_ms: float, tag: str, at_most_s: float
    ) -> _Hold:
        """A program started to hold the packets host ``host`` gets from ``sources``."""
        queue = self._free_queue(host)
        addresses = ",".join(self.hosts[source].address for source in sources)
        chain = f"{tag}-delay-{queue}"
        program = _start_delay(self.hosts[host].namespace, queue, delay_ms, at_most_s)
        return _Hold(host, program, queue, chain, f"-A INPUT -s {addresses} -j {chain}")

    def _feed(self, hold: _Hold) -> None:
        """The rules that queue ``hold``'s packets to its program. Bypass: with the program
        gone, they pass rather than being dropped."""
        queued = f"-A {hold.chain} -j NFQUEUE --queue-num {hold.queue} --queue-bypass"
        _iptables(self.hosts[hold.host].namespace, f":{hold.chain} - [0:0]", queued, hold.jump)

    def _unfeed(self, hold: _Hold) -> None:
        unjump = hold.jump.replace("-A", "-D", 1)
        _iptables(self.hosts[hold.host].namespace, unjump, f"-F {hold.chain}", f"-X {hold.chain}")

    def _undelay(self, delayed: _Delay) -> list[str]:
        """Removes ``delayed`` (no longer in ``delays``); returns what failed. Its programs
        are stopped whatever failed before: they must not hold a link's packets after."""
        failures = []
        for hold in delayed.holds:
            try:
                self._unfeed(hold)
            except NetworkError as error:
                failures.append(str(error))
        time.sleep(delayed.delay_ms / 1000 + DELAY_MARGIN_S)
        return failures + self._stop_holds(delayed.holds)

    def _stop_holds(self, holds: Iterable[_Hold]) -> list[str]:
        """Stops the programs of ``holds``; returns how those that failed did."""
        failures = []
        for hold in holds:
            error = _stop(hold.program)
            if hold.program.returncode != 0:
                failures.append(f"{hold.host}: {error or hold.program.returncode}")
            if hold.host not in self._holding():
                # iptables-nft leaves its table behind, empty: gone, the host is as it was
                with contextlib.suppress(NetworkError):
                    self._nft(hold.host, "delete", "table", "ip", "filter")
        return failures

    def _holding(self) -> dict[str, set[int]]:
        """The hosts where delays hold packets, with the queues they use there."""
        queues: dict[str, set[int]] = {}
        for delayed in self.delays.values():
            for hold in delayed.holds:
                queues.setdefault(hold.host, set()).add(hold.queue)
        return queues

    def _free_queue(self, host: str) -> int:
        """The lowest queue number no delay uses in ``host``'s namespace."""
        used = self._holding().get(host, set())
        return min(set(range(len(used) + 1)) - used)

    def _nft(self, name: str, *argv: str) -> None:
        _run("ip", "netns", "exec", self.hosts[name].namespace, "nft", *argv)

    def _addresses(self, peers: Iterable[str]) -> str:
        return "{ " + ", ".join(self.hosts[peer].address for peer in peers) + " }"

    def _table(self, name: str, tag: str, chains: list[str]) -> None:
        ruleset = f"table inet {tag} {{\n" + "\n".join(chains) + "\n}\n"
        _load(self.hosts[name].namespace, ["nft", "-f", "-"], ruleset, f"nft, for {name}")

    def remove(self) -> None:
        self.leave()
        for delayed in self.delays.values():
            for hold in delayed.holds:
                _stop(hold.program)
        self.delays.clear()
        remove_leftovers(self.layout)
        self.hosts.clear()


def _chain(hook: str, field: str, addresses: str, verdict: str) -> str:
    """An nft chain on ``hook`` applying ``verdict`` to packets whose ``field`` (saddr,
    daddr) is one of ``addresses``."""
    return (
        f"chain {hook} {{ type filter hook {hook} priority 0; ip {field} {addresses} {verdict}; }}"
    )


def _iptables(namespace: str, *lines: str) -> None:
    """Applies iptables ``lines`` (``-A``, ``-D``, ``-X``, ``:chain``) to the filter table of
    ``namespace`` in one go: all of them or, if one fails, none."""
    ruleset = "*filter\n" + "\n".join(lines) + "\nCOMMIT\n"
    _load(namespace, ["iptables-restore", "--noflush"], ruleset, f"iptables, in {namespace}")


def _load(namespace: str, tool: list[str], ruleset: str, who: str) -> None:
    """Feeds ``ruleset`` to ``tool`` (which reads it on stdin) in ``namespace``."""
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, *tool],
        input=ruleset,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise NetworkError(f"{who} refused the rules: {result.stderr.strip()}")


def _start_delay(
    namespace: str, queue: int, delay_ms: float, at_most_s: float
) -> subprocess.Popen[bytes]:
    """``tests.faults.delay`` started to hold the packets of queue ``queue`` in ``namespace``
    (not yet listening: see ``_await_listening``)."""
    if importlib.util.find_spec("netfilterqueue") is None:
        raise NetworkError("NetfilterQueue is missing (delayed links): run `make test-tools`")
    argv = [
        *("ip", "netns", "exec", namespace, sys.executable, "-m", "tests.faults.delay"),
        *("--queue", str(queue), "--ms", str(delay_ms), "--for-s", str(at_most_s)),
    ]
    return subprocess.Popen(
        argv,
        cwd=_PROJECT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _await_listening(program: subprocess.Popen[bytes], queue: int, namespace: str) -> None:
    """Returns once ``program`` listens on queue ``queue``: a packet queued before would pass
    undelayed."""
    deadline = time.monotonic() + 10
    while not _listens(program.pid, queue):
        if program.poll() is not None or time.monotonic() > deadline:
            error = _stop(program)
            raise NetworkError(f"the delay program did not start in {namespace}: {error}")
        time.sleep(0.02)


def _listens(pid: int, queue: int) -> bool:
    """Whether process ``pid`` has bound netfilter queue ``queue`` (as its namespace sees)."""
    try:
        bound = Path(f"/proc/{pid}/net/netfilter/nfnetlink_queue").read_text()
    except OSError:
        return False
    return any(line.split()[:1] == [str(queue)] for line in bound.splitlines())


def _stop(program: subprocess.Popen[bytes]) -> str:
    """Stops a delay program (on SIGTERM it lets through what it holds, then exits); returns
    what it said on stderr (nothing unless it failed, nor when it was stopped before)."""
    if program.stderr is not None and program.stderr.closed:
        return ""
    program.terminate()
    try:
        _, error = program.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        program.kill()
        _, error = program.communicate(timeout=5)
    return (error or b"").decode(errors="replace").strip()


def _setns(fd: int) -> None:
    """Moves the calling thread into the network namespace open at ``fd`` (Python 3.11 has
    no ``os.setns``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


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
