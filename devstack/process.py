"""Start and stop long-running service processes, tracked by pid files.

A service is started in its own session (so its pid is also its process-group id) with its
output appended to a log file. Stopping signals the whole group and waits until every process
in it is gone; a pid whose command line no longer names the service is never signalled, so a
recycled pid cannot kill an unrelated process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

PRIVATE_UMASK = 0o077
"""What every process of the stack creates is its owner's alone: files 0600, folders 0700."""
PRIVATE_FILE = 0o600


@dataclass(frozen=True, slots=True)
class ProcessHandle:
    """How to find a started service again and how it wants to be stopped."""

    pid_file: Path
    marker: str
    """A string that appears in the service's command line (e.g. its config path)."""
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 30.0


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """How to run one service process."""

    argv: Sequence[str]
    log_file: Path
    user: str | None = None
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


def in_namespace(spec: LaunchSpec, namespace: str) -> LaunchSpec:
    """``spec`` run inside network namespace ``namespace`` (``ip netns exec``, as root). Both
    ``ip`` and ``setpriv`` exec in place, so the pid is the service's own; the user is
    dropped to by ``setpriv`` after entering the namespace, which needs root."""
    argv = ["ip", "netns", "exec", namespace]
    if spec.user:
        argv += ["setpriv", f"--reuid={spec.user}", f"--regid={spec.user}", "--clear-groups"]
    return replace(spec, argv=[*argv, *spec.argv], user=None)


def _cmdline(pid: int) -> str | None:
    """The process's command line; None if there is no such process.

    A process in the middle of ``exec`` briefly shows an empty command line, so an empty
    answer is asked again for up to a second before it is believed.
    """
    for _ in range(50):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        if raw or _is_zombie(pid):
            break
        time.sleep(0.02)
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


# Popen objects of services this process started: kept so that they are not collected (and
# warned about) while the service runs on; services outlive ``iotctl`` and are not waited for.
_DETACHED: list[subprocess.Popen[bytes]] = []


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and has not exited (a zombie has exited)."""
    return not _is_zombie(pid)


def running_pid(handle: ProcessHandle) -> int | None:
    """The pid recorded for ``handle`` if that process is alive and is really this service."""
    try:
        pid = int(handle.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    cmdline = _cmdline(pid)
    if cmdline is None or handle.marker not in cmdline or _is_zombie(pid):
        return None
    return pid


def spawn(spec: LaunchSpec, handle: ProcessHandle) -> int:
    """Start ``spec`` detached from the caller and record its pid; returns the pid."""
    handle.pid_file.parent.mkdir(parents=True, exist_ok=True)
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ if spec.env is None else spec.env)
    fd = os.open(spec.log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)  # also a log an older stack left readable
    with os.fdopen(fd, "ab") as log:
        process = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=spec.cwd,
            env=env,
            user=spec.user,
            group=spec.user,
            extra_groups=[] if spec.user else None,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    _DETACHED.append(process)
    handle.pid_file.write_text(f"{process.pid}\n")
    handle.pid_file.chmod(PRIVATE_FILE)
    return process.pid


def _group_alive(pgid: int) -> bool:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) == pgid and not _is_zombie(int(entry.name)):
                return True
        except OSError:
            continue
    return False


def stop(handle: ProcessHandle) -> bool:
    """Stop the service's whole process group; True if something was running.

    Sends ``handle.stop_signal`` and waits ``handle.stop_timeout_s`` for a clean exit, then
    sends SIGKILL. Removes the pid file either way.
    """
    return stop_together([handle])[0]


def stop_together(handles: Sequence[ProcessHandle]) -> list[bool]:
    """Stops several services at once, as :func:`stop` does one (each within its own
    timeout); for each, True if it was running. The nodes of a cluster stop together: one
    left running alone may wait for peers that are gone (a quorum) before it exits."""
    pids = [running_pid(handle) for handle in handles]
    for handle, pid in zip(handles, pids, strict=True):
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, handle.stop_signal)
    started = time.monotonic()
    for handle, pid in zip(handles, pids, strict=True):
        if pid is None:
            handle.pid_file.unlink(missing_ok=True)
            continue
        deadline = started + handle.stop_timeout_s
        while _group_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.05)
        handle.pid_file.unlink(missing_ok=True)
    return [pid is not None for pid in pids]


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log written)"
    return "\n".join(content[-lines:])
