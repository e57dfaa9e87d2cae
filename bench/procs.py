"""Child processes of a benchmark and CPU accounting from ``/proc`` (Linux).

A benchmark on the shared 2-core dev machine must say how much CPU each party used while it
measured: the processes it started, the shared servers, and everything else (``other``).
Looking up the servers' pids only reads ``/proc``; nothing here signals a process that the
benchmark did not start itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), or None if it is gone."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / CLK_TCK, sum(values) / CLK_TCK


def pid_listening(port: int) -> int | None:
    """The process holding the listening TCP socket of ``port`` (read-only, via ``/proc``)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                    inodes.add(f"socket:[{fields[9]}]")
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                for fd in (entry / "fd").iterdir():
                    with contextlib.suppress(OSError):
                        if os.readlink(fd) in inodes:
                            return int(entry.name)
    return None


@dataclass
class CpuWindow:
    """CPU used by named processes, and by the machine, between ``start`` and ``stop``."""

    pids: dict[str, int | None]
    started: dict[str, float | None] = field(default_factory=dict)
    machine: tuple[float, float] = (0.0, 0.0)
    wall: float = 0.0

    def start(self) -> None:
        self.started = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        self.machine = machine_cpu()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """Percent of one core per named process; ``other`` is the machine's busy time that
        none of them used; ``machine_busy_pct_of_all_cores``; raw ``cpu_seconds``."""
        wall = time.monotonic() - self.wall
        busy0, total0 = self.machine
        busy1, total1 = machine_cpu()
        used: dict[str, float] = {}
        for name, pid in self.pids.items():
            before, after = self.started.get(name), cpu_seconds(pid)
            if before is not None and after is not None:
                used[name] = after - before
        result: dict[str, Any] = {name: _pct(used.get(name), wall) for name in self.pids}
        result["machine_busy_pct_of_all_cores"] = round(
            100 * (busy1 - busy0) / max(total1 - total0, 1e-9), 1
        )
        result["other"] = _pct(max(0.0, (busy1 - busy0) - sum(used.values())), wall)
        result["seconds"] = round(wall, 2)
        result["cpu_seconds"] = used
        return result


def _pct(cpu: float | None, wall: float) -> float | None:
    return None if cpu is None else round(100 * cpu / max(wall, 1e-9), 1)


class Spawned:
    """A child process of the benchmark; ``stop`` ends it by pid (SIGTERM, then SIGKILL)."""

    def __init__(self, name: str, process: asyncio.subprocess.Process) -> None:
        self.name, self.process = name, process

    @property
    def pid(self) -> int:
        return self.process.pid

    async def stop(self, grace_s: float = 15) -> int | None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), grace_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


class Children:
    """Every process the benchmark started; ``stop_all`` is the cleanup of last resort."""

    def __init__(self) -> None:
        self.running: list[Spawned] = []

    async def spawn(self, name: str, *args: str, **kwargs: Any) -> Spawned:
        process = await asyncio.create_subprocess_exec(*args, **kwargs)
        child = Spawned(name, process)
        self.running.append(child)
        return child

    async def stop_all(self) -> None:
        await asyncio.gather(*(child.stop(5) for child in self.running), return_exceptions=True)
