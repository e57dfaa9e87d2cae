"""Wall clocks the tests can step, one per host: a process started with ``HostClock.env()``
reads the wall clock (``CLOCK_REALTIME``: ``time.time``, ``datetime.now``) through
libfaketime, offset by what the clock's file says, while its monotonic clocks stay true, as
when NTP or an operator steps a real host's clock.

A time namespace cannot do this (it offsets only the monotonic and boot clocks), and
stepping this machine's clock would step every component at once. libfaketime's own build
from PyPI is used: Debian's 0.9.10 breaks CPython 3.11's ``time.sleep`` (EINVAL from
``clock_nanosleep``).
"""

from __future__ import annotations

from pathlib import Path

import libfaketime

CACHE_S = 1
"""How long a process keeps the offset it read (libfaketime counts whole seconds past it)."""
RELOAD_S = CACHE_S + 1
"""A step takes effect in every process within this."""


class HostClock:
    """The wall clock of one host (or process), stepped by writing its offset to ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_s = 0.0
        self.step(0.0)

    def env(self) -> dict[str, str]:
        """What a process's environment needs to read this clock."""
        _, preload = libfaketime.get_reload_information()
        return {
            **preload,
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "0",
            "FAKETIME_CACHE_DURATION": str(CACHE_S),
            "NO_FAKE_STAT": "1",  # files keep their true times
        }

    def step(self, offset_s: float) -> None:
        """From now on (within ``RELOAD_S``) the host's wall clock is ``offset_s`` seconds
        off the true time (0: true again)."""
        staged = self.path.with_suffix(".next")
        staged.write_text(f"{offset_s:+.3f}\n")
        staged.chmod(0o644)
        staged.replace(self.path)  # a reader sees the old offset or the new one, whole
        self.offset_s = offset_s
