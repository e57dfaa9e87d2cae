"""The gateway's receive clock follows the wall clock forward, never goes back, and catches
up with a wall clock that did."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iot_gateway.clock import ReceiveClock


class _Clocks:
    def __init__(self) -> None:
        self.wall = 1_000.0
        self.mono = 5.0


def _clock(clocks: _Clocks) -> ReceiveClock:
    return ReceiveClock(lambda: clocks.wall, lambda: clocks.mono)


def test_a_wall_clock_step_back_is_ridden_out_at_half_the_monotonic_rate() -> None:
    clocks = _Clocks()
    clock = _clock(clocks)
    clocks.wall, clocks.mono = 1_010.0, 15.0
    assert clock() == 1_010.0
    clocks.wall, clocks.mono = 400.0, 16.0  # stepped back ten minutes
    assert clock() == 1_010.5
    assert clock.steps_back == 1
    clocks.wall, clocks.mono = 1_500.0, 17.0  # stepped forward: followed
    assert clock() == 1_500.0


def test_a_step_ahead_set_right_is_caught_up_with_within_twice_the_step() -> None:
    """Found by the fault suite: a gateway's clock stepped 558 s ahead and set right kept
    dating readings 558 s ahead (its produce latency read -531 s) for as long as it ran."""
    clocks = _Clocks()
    clock = _clock(clocks)
    clocks.wall += 558  # a wrong step ahead
    assert clock() == 1_558.0
    clocks.wall -= 558  # set right
    for _ in range(2 * 558):
        clocks.wall += 1.0
        clocks.mono += 1.0
        clock()
    assert clock() == clocks.wall


@given(st.lists(st.tuples(st.floats(-1e4, 1e4), st.floats(0, 100)), max_size=50))
def test_never_goes_back_and_never_lags_the_wall_clock(steps: list[tuple[float, float]]) -> None:
    clocks = _Clocks()
    clock = _clock(clocks)
    previous = clock()
    for wall_step, mono_step in steps:
        clocks.wall += wall_step
        clocks.mono += mono_step
        now = clock()
        assert now >= previous
        assert now >= clocks.wall
        assert now >= previous + mono_step * 0.5 - 1e-6  # runs on, at half the rate at least
        previous = now
