"""A link's delay, made in userspace: this kernel has no ``netem``, so iptables hands the
packets that arrive over the link to a netfilter queue (``NFQUEUE``) and this program, run in
the namespace of the host they arrive at, holds each for the delay and then lets it through,
in the order the packets came (a constant delay keeps each direction's order).

    ip netns exec iotf-gateway-1 python -m tests.faults.delay --queue 0 --ms 200 --for-s 600

``HostNetwork.delay`` starts it and ``heal`` stops it. It stops by itself after ``--for-s``
seconds so that it can never outlive the suite that started it (the iptables rule's
``--queue-bypass`` then lets the link's packets through undelayed), and on SIGTERM or SIGINT.
Whenever it stops, it first lets through every packet it holds: a queue's packets still
waiting for a verdict when its program unbinds are dropped by the kernel, and a heal must lose
nothing. It prints nothing unless it fails.
"""

from __future__ import annotations

import argparse
import selectors
import signal
import socket
import time
from collections import deque
from collections.abc import Sequence

from netfilterqueue import COPY_META, NetfilterQueue, Packet

MOST_HELD = 50_000
"""Packets the kernel keeps queued for this program at most, those it holds included: at
200 ms, 250,000 packets/s (it let 150,000/s through on one core's 0.6); past it the kernel
drops the link's packets."""


class _Held:
    """The packets held, oldest first, each with the time it may go on."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.packets: deque[tuple[float, Packet]] = deque()

    def take(self, packet: Packet) -> None:
        """The queue's callback: holds ``packet`` (only its id and the verdict are needed, so
        its payload is never copied out of the kernel)."""
        self.packets.append((time.monotonic() + self.delay_s, packet))

    def release_due(self) -> None:
        now = time.monotonic()
        while self.packets and self.packets[0][0] <= now:
            self.packets.popleft()[1].accept()

    def release_all(self) -> None:
        while self.packets:
            self.packets.popleft()[1].accept()

    def wait_s(self, until: float) -> float:
        """How long nothing is due: until the oldest packet's time, or ``until``."""
        due = self.packets[0][0] if self.packets else until
        return max(0.0, min(due, until) - time.monotonic())


def hold(queue_number: int, delay_ms: float, for_s: float) -> None:
    """Delays every packet of queue ``queue_number`` by ``delay_ms`` for ``for_s`` seconds, or
    until SIGTERM or SIGINT."""
    held = _Held(delay_ms / 1000)
    queue = NetfilterQueue()
    queue.bind(queue_number, held.take, max_len=MOST_HELD, mode=COPY_META)
    # A signal only wakes the select below (through this pair); the loop then ends in order.
    wake_read, wake_write = socket.socketpair()
    wake_write.setblocking(False)
    signal.set_wakeup_fd(wake_write.fileno())
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: None)
    ready = selectors.DefaultSelector()
    ready.register(queue.get_fd(), selectors.EVENT_READ)
    ready.register(wake_read, selectors.EVENT_READ)
    end = time.monotonic() + for_s
    try:
        stopping = False
        while not stopping and time.monotonic() < end:
            for key, _ in ready.select(held.wait_s(end)):
                stopping |= key.fileobj is wake_read
            queue.run(block=False)  # takes every packet queued so far, without waiting
            held.release_due()
    finally:
        queue.run(block=False)
        held.release_all()
        queue.unbind()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queue", type=int, required=True, help="netfilter queue number")
    parser.add_argument("--ms", type=float, required=True, help="each packet's delay")
    parser.add_argument("--for-s", type=float, required=True, help="stop by itself after this")
    args = parser.parse_args(argv)
    hold(args.queue, args.ms, args.for_s)


if __name__ == "__main__":
    main()
