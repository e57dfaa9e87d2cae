"""The fault suite's hosts: addresses from names, and real namespaces whose links are cut,
cut one way, made lossy and healed (root, ``ip`` and ``nft``, as the fault suite needs)."""

from __future__ import annotations

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
    assert FAULTS.address_for("gateway-2") == "10.77.0.32"
    assert FAULTS.address_for("worker-3") == "10.77.0.43"
    assert OWN.address_for("worker-1") == "10.77.1.41"
    for wrong in ("mosquitto", "worker-x", "worker-10", "worker-0", "postgres-2"):
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
    assert address not in others | {FAULTS.this_host, FAULTS.address_for("postgres")}


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
