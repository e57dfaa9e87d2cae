"""The fault suite's hosts: addresses from names, and real namespaces whose links are cut,
cut one way, made lossy, delayed and healed (root, ``ip``, ``nft``, ``iptables`` and
NetfilterQueue, as the fault suite needs)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.faults.network import FAULTS, HostNetwork, Layout

OWN = Layout("10.77.1.0/24", "iott0", "iott-")
"""This test's network: beside the fault suite's, never touching it."""

ECHO = """
import select, socket, sys
address = sys.argv[1]
tcp = socket.create_server((address, 7000))
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((address, 7001))
while True:
    for ready in select.select([tcp, udp], [], [])[0]:
        try:
            if ready is udp:
                data, peer = udp.recvfrom(64)
                udp.sendto(data, peer)
            else:
                conn, _ = tcp.accept()
                conn.settimeout(1)
                conn.sendall(conn.recv(64))
                conn.close()
        except OSError:  # a reply nft drops on the way out fails with EPERM
            pass
"""


def test_each_role_has_its_own_addresses() -> None:
    assert FAULTS.this_host == "10.77.0.1"
    assert [FAULTS.address_for(n) for n in ("kafka", "kafka-2", "kafka-3")] == [
        "10.77.0.11",
        "10.77.0.12",
        "10.77.0.13",
    ]
    assert FAULTS.address_for("postgres") == "10.77.0.20"
    assert FAULTS.address_for("devices") == "10.77.0.2"
    assert FAULTS.address_for("gateway-2") == "10.77.0.32"
    assert FAULTS.address_for("worker-3") == "10.77.0.43"
    assert OWN.address_for("worker-1") == "10.77.1.41"
    for wrong in ("mosquitto", "worker-x", "worker-10", "worker-0", "postgres-2", "devices-2"):
        with pytest.raises(ValueError, match="no address"):
            FAULTS.address_for(wrong)


@given(st.sampled_from(["kafka", "gateway", "worker"]), st.integers(1, 9))
def test_addresses_stay_in_the_network_and_never_collide(role: str, number: int) -> None:
    address = FAULTS.address_for(f"{role}-{number}")
    assert address.startswith("10.77.0.")
    others = {
        FAULTS.address_for(f"{other}-{n}")
        for other in ("kafka", "gateway", "worker")
        for n in range(1, 10)
        if other != role
    }
    single = {FAULTS.this_host, FAULTS.address_for("postgres"), FAULTS.address_for("devices")}
    assert address not in others | single


@pytest.fixture
def network() -> Iterator[HostNetwork]:
    made = HostNetwork.create(["gateway-1", "worker-1"], OWN)
    echo = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            made.hosts["worker-1"].namespace,
            sys.executable,
            "-c",
            ECHO,
            made.hosts["worker-1"].address,
        ]
    )
    try:
        yield made
    finally:
        echo.kill()
        echo.wait(10)
        made.remove()


def _talks(network: HostNetwork, source: str, *, attempts: int = 30) -> bool:
    """Whether host ``source`` (or this host) gets an answer from worker-1's TCP echo."""
    target = network.hosts["worker-1"].address
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"  c=socket.create_connection(('{target}',7000),timeout=1); c.sendall(b'hi')\n"
        "  sys.exit(0 if c.recv(8)==b'hi' else 1)\n"
        "except OSError: sys.exit(1)\n"
    )
    prefix = ["ip", "netns", "exec", network.hosts[source].namespace] if source else []
    for _ in range(attempts):  # the echo server may still be starting
        if subprocess.run([*prefix, sys.executable, "-c", probe], check=False).returncode == 0:
            return True
        time.sleep(0.1)
    return False


def _source_address(network: HostNetwork) -> str:
    """The address this process's connection to worker-1's echo comes from."""
    target = network.hosts["worker-1"].address
    for _ in range(30):  # the echo server may still be starting
        with contextlib.suppress(OSError), socket.create_connection((target, 7000), 1) as link:
            return str(link.getsockname()[0])
        time.sleep(0.1)
    raise AssertionError("worker-1's echo never answered")


def test_this_process_enters_a_host_works_from_it_and_leaves(network: HostNetwork) -> None:
    """The suite runs in the devices' host: its sockets and the processes it starts are
    there, and it still makes hosts and cuts links; leaving brings it back."""
    network.add("devices")
    network.enter("devices")
    try:
        assert _source_address(network) == OWN.address_for("devices")
        network.add("gateway-2")  # made at the bridge, from inside a host
        assert _talks(network, "gateway-2")
        network.cut("worker-1", ["devices"], tag="edge")
        assert not _talks(network, "", attempts=3)  # a process started here is here too
        assert _talks(network, "gateway-2")
        network.heal("worker-1", "edge")
        assert _talks(network, "")
    finally:
        network.leave()
    assert _source_address(network) == OWN.this_host


def test_a_cut_drops_both_ways_a_one_way_cut_one_way_and_heal_restores(
    network: HostNetwork,
) -> None:
    assert _talks(network, "gateway-1")
    network.cut("gateway-1", ["worker-1"], tag="fault")
    assert not _talks(network, "gateway-1", attempts=1)
    assert _talks(network, "")  # this host still reaches it: only that link is cut
    network.heal("gateway-1", "fault")
    assert _talks(network, "gateway-1")
    # What worker-1 sends gateway-1 is lost (the SYN-ACK), what it receives arrives.
    network.cut("worker-1", ["gateway-1"], tag="fault", inbound=False)
    assert not _talks(network, "gateway-1", attempts=1)
    rules = subprocess.run(
        ["ip", "netns", "exec", network.hosts["worker-1"].namespace, "nft", "list", "ruleset"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "hook output" in rules
    assert "hook input" not in rules
    network.heal("worker-1", "fault")
    assert _talks(network, "gateway-1")


def _answered(network: HostNetwork, count: int, wait_s: float = 0.5) -> int:
    """Datagrams of ``count`` sent from gateway-1 that worker-1's echo answered."""
    target = network.hosts["worker-1"].address
    client = (
        "import socket\n"
        f"u=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); u.settimeout({wait_s}); got=set()\n"
        f"for n in range({count}):\n"
        "  try:\n"
        f"    u.sendto(str(n).encode(),('{target}',7001)); got.add(int(u.recv(16)))\n"
        "  except OSError: pass\n"
        "print(len(got))\n"
    )
    namespace = network.hosts["gateway-1"].namespace
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", client],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


def test_a_lossy_link_loses_some_packets_and_heals(network: HostNetwork) -> None:
    assert _talks(network, "gateway-1")
    assert _answered(network, 100) == 100
    network.lossy("worker-1", ["gateway-1"], 50, tag="fault")
    lossy = _answered(network, 60, 0.1)  # a round trip survives both ways: about 1 in 4
    assert 0 < lossy < 60
    network.heal("worker-1", "fault")
    assert _answered(network, 100) == 100


def _connect_ms(network: HostNetwork, source: str) -> float:
    """The quickest of 3 TCP connects from host ``source`` (or this host) to worker-1's echo:
    one round trip (SYN, SYN-ACK), in milliseconds."""
    target = network.hosts["worker-1"].address
    probe = (
        "import socket,time\n"
        "times=[]\n"
        "for _ in range(3):\n"
        "  t=time.monotonic()\n"
        f"  socket.create_connection(('{target}',7000),timeout=5).close()\n"
        "  times.append(time.monotonic()-t)\n"
        "print(min(times)*1000)\n"
    )
    prefix = ["ip", "netns", "exec", network.hosts[source].namespace] if source else []
    result = subprocess.run(
        [*prefix, sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    return float(result.stdout)


STREAM = """
import json, socket, sys, time
target, count, spacing_s, quiet_s = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), 1.5
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
u.settimeout(spacing_s)
sent, back = {}, []
start = time.monotonic()
while True:
    now = time.monotonic()
    if len(sent) < count and now >= start + len(sent) * spacing_s:
        sent[len(sent)] = now
        u.sendto(str(len(sent) - 1).encode(), (target, 7001))
        continue
    if len(sent) == count:
        u.settimeout(quiet_s)
    try:
        n = int(u.recv(16))
    except TimeoutError:
        if len(sent) == count:
            break
        continue
    back.append([n, (time.monotonic() - sent[n]) * 1000])
print(json.dumps(back))
"""
"""Sends ``count`` numbered datagrams to worker-1's UDP echo, one every ``spacing_s``, and
prints the echoes as they come back (number, round trip in ms) until none came for 1.5 s."""


def _stream(network: HostNetwork, count: int, spacing_s: float = 0.003) -> subprocess.Popen[str]:
    """``STREAM`` run from gateway-1; its output is the echoes, in the order they came."""
    namespace = network.hosts["gateway-1"].namespace
    target = network.hosts["worker-1"].address
    argv = [sys.executable, "-c", STREAM, target, str(count), str(spacing_s)]
    return subprocess.Popen(
        ["ip", "netns", "exec", namespace, *argv],
        stdout=subprocess.PIPE,
        text=True,
    )


def _echoes(stream: subprocess.Popen[str]) -> list[tuple[int, float]]:
    out, _ = stream.communicate(timeout=30)
    return [(n, rtt) for n, rtt in json.loads(out)]


def _rules(network: HostNetwork) -> str:
    """Both hosts' nft rulesets (iptables-nft's rules among them)."""
    return "".join(
        subprocess.run(
            ["ip", "netns", "exec", host.namespace, "nft", "list", "ruleset"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for host in network.hosts.values()
    )


def _programs(network: HostNetwork) -> list[subprocess.Popen[bytes]]:
    return [hold.program for delayed in network.delays.values() for hold in delayed.holds]


def test_a_delayed_link_takes_its_delay_each_way_only_there_and_heals(
    network: HostNetwork,
) -> None:
    assert _talks(network, "gateway-1")
    assert _connect_ms(network, "gateway-1") < 20
    network.delay("worker-1", ["gateway-1"], 200, tag="fault")
    assert _connect_ms(network, "gateway-1") >= 350  # 200 ms there, 200 ms back
    assert _connect_ms(network, "") < 20  # this host's link to worker-1 is not delayed
    programs = _programs(network)
    assert len(programs) == 2  # one where each way's packets arrive
    network.heal("worker-1", "fault")
    assert _connect_ms(network, "gateway-1") < 20
    assert [program.returncode for program in programs] == [0, 0]
    assert _rules(network) == ""  # no rule, no table left
    assert network.delays == {}


def test_a_delayed_link_loses_nothing_keeps_order_and_a_heal_drops_nothing(
    network: HostNetwork,
) -> None:
    assert _talks(network, "gateway-1")
    network.delay("worker-1", ["gateway-1"], 200, tag="fault")
    echoes = _echoes(_stream(network, 300))
    assert [n for n, _ in echoes] == list(range(300))  # UDP: nothing resent, nothing lost
    assert min(rtt for _, rtt in echoes) >= 350
    # Healed mid-stream: what the delay programs hold then still arrives (later packets,
    # no longer delayed, may overtake it).
    stream = _stream(network, 300)
    time.sleep(0.5)
    network.heal("worker-1", "fault")
    echoes = _echoes(stream)
    assert sorted(n for n, _ in echoes) == list(range(300))
    assert min(rtt for _, rtt in echoes) < 20


SINK = """
import socket, sys
server = socket.create_server((sys.argv[1], 7002))
conn, _ = server.accept()
with conn.makefile() as lines:
    print(sum(1 for n, line in enumerate(lines) if line == f"{n}\\n"))
"""
"""Counts the numbered lines of one TCP connection that come whole and in their place."""

LINES = """
import socket, sys, time
with socket.create_connection((sys.argv[1], 7002), timeout=5) as conn:
    conn.sendall("".join(f"{n}\\n" for n in range(int(sys.argv[2]))).encode())
"""


def test_a_delayed_tcp_stream_comes_whole_in_order_and_is_not_throttled(
    network: HostNetwork,
) -> None:
    """200,000 lines (1.3 MB) in 30 round trips of 400 ms: TCP's slow start needs about 10.
    Held where they were sent instead, a packet or two would go per round trip (TCP's small
    queues count them as still sent): minutes."""
    worker, gateway = network.hosts["worker-1"], network.hosts["gateway-1"]
    network.delay("worker-1", ["gateway-1"], 200, tag="fault")
    sink = subprocess.Popen(
        ["ip", "netns", "exec", worker.namespace, sys.executable, "-c", SINK, worker.address],
        stdout=subprocess.PIPE,
        text=True,
    )
    lines = ["ip", "netns", "exec", gateway.namespace, sys.executable, "-c", LINES]
    for _ in range(30):  # the sink may still be starting
        sent = subprocess.run([*lines, worker.address, "200000"], check=False, timeout=15)
        if sent.returncode == 0:
            break
        time.sleep(0.1)
    assert sink.communicate(timeout=12)[0] == "200000\n"
    network.heal("worker-1", "fault")


def test_a_delayed_link_can_be_lossy_too(network: HostNetwork) -> None:
    assert _talks(network, "gateway-1")
    network.delay("worker-1", ["gateway-1"], 200, tag="fault", loss_percent=50)
    echoes = _echoes(_stream(network, 200))
    assert 0 < len(echoes) < 200  # a round trip survives both ways: about 1 in 4
    assert min(rtt for _, rtt in echoes) >= 350
    network.heal("worker-1", "fault")
    assert _answered(network, 100) == 100


def test_a_delay_program_stops_by_itself_and_its_link_then_passes(network: HostNetwork) -> None:
    assert _talks(network, "gateway-1")
    network.delay("worker-1", ["gateway-1"], 200, tag="fault", at_most_s=1)
    assert [program.wait(10) for program in _programs(network)] == [0, 0]
    # its rules are still there, but bypassed: the link's packets pass, undelayed
    assert "queue" in _rules(network)
    assert _connect_ms(network, "gateway-1") < 20
    network.heal("worker-1", "fault")
    assert _rules(network) == ""
