"""A host clock the tests step is what a process started on it reads: its wall clock moves
by the step (within ``RELOAD_S``), its monotonic clock does not, and the gateway's receive
clock, run in that process, holds its pace through a step back."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.clocks import RELOAD_S, HostClock

PROBE = """
import sys, time
from iot_gateway.clock import ReceiveClock
clock = ReceiveClock()
for _ in sys.stdin:
    print(time.time(), clock(), clock.steps_back, time.monotonic(), flush=True)
"""


class Reading(NamedTuple):
    wall: float
    stamp: float
    steps_back: int
    mono: float
    true: float
    """This process's wall clock (never stepped) when the reading came back."""


class Probe:
    def __init__(self, clock: HostClock) -> None:
        env = {"PATH": "/usr/bin:/bin", **clock.env()}
        self.process = subprocess.Popen(
            [sys.executable, "-c", PROBE],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def read(self) -> Reading:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write("\n")
        self.process.stdin.flush()
        wall, stamp, steps, mono = self.process.stdout.readline().split()
        return Reading(float(wall), float(stamp), int(steps), float(mono), time.time())

    def settle(self) -> Reading:
        """A reading once the process has read its clock's file again."""
        time.sleep(RELOAD_S + 0.5)
        return self.read()


@pytest.fixture
def probe(tmp_path: Path) -> Iterator[tuple[HostClock, Probe]]:
    clock = HostClock(tmp_path / "clock")
    probe = Probe(clock)
    try:
        yield clock, probe
    finally:
        probe.process.kill()
        probe.process.communicate(timeout=10)  # reaped, its pipes closed


def test_a_step_moves_the_wall_clock_and_not_the_monotonic_one(
    probe: tuple[HostClock, Probe],
) -> None:
    clock, process = probe
    first = process.read()
    assert abs(first.wall - first.true) < 1
    clock.step(-300.0)
    back = process.settle()
    assert abs(back.wall - (back.true - 300)) < 1
    assert 0 < back.mono - first.mono < 10  # the monotonic clock ran on, unstepped
    clock.step(+450.0)
    ahead = process.settle()
    assert abs(ahead.wall - (ahead.true + 450)) < 1
    clock.step(0.0)
    right = process.settle()
    assert abs(right.wall - right.true) < 1


def test_the_receive_clock_holds_its_pace_through_a_step_back(
    probe: tuple[HostClock, Probe],
) -> None:
    clock, process = probe
    before = process.read()
    clock.step(-300.0)
    during = process.settle()
    assert during.steps_back >= 1
    assert during.stamp >= before.stamp  # never back
    assert abs(during.stamp - during.true) < 2  # ran on at the monotonic clock's pace
    clock.step(0.0)
    after = process.settle()
    assert after.stamp >= during.stamp
    assert abs(after.stamp - after.true) < 2
