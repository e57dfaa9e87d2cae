"""The time the gateway stamps on what it receives (``received_at``, and ``ts`` when a device
sends none): wall-clock time that never goes back.

A wall clock stepped back (a bad NTP answer, an operator's ``date``, a wrong step ahead set
right) would date new readings before older ones, so the processors would count them late
and keep stale values as the latest. :class:`ReceiveClock` follows the wall clock forward
and, when it steps back, keeps counting from its last reading at half the monotonic clock's
rate, so the wall clock catches up within twice the step: never back, and never ahead for
good (at full rate, a clock set right after a step ahead would never be caught up with, and
every reading would be dated that far in the future until the gateway restarted, and then
back).
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["ReceiveClock", "received_now"]


SLEW = 0.5
"""The receive clock's rate, against the monotonic clock's, while the wall clock is behind."""


class ReceiveClock:
    """Seconds since the epoch, never less than the previous answer (see the module)."""

    __slots__ = ("_last", "_last_mono", "_mono", "_wall", "steps_back")

    def __init__(
        self,
        wall: Callable[[], float] = time.time,
        mono: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall = wall
        self._mono = mono
        self._last = wall()
        self._last_mono = mono()
        self.steps_back = 0
        """How many times the wall clock was found behind this clock."""

    def __call__(self) -> float:
        wall, mono = self._wall(), self._mono()
        projected = self._last + (mono - self._last_mono) * SLEW
        if wall < projected:
            if wall < self._last:
                self.steps_back += 1
            wall = projected
        self._last, self._last_mono = wall, mono
        return wall


received_now = ReceiveClock()
"""The process's receive clock."""
