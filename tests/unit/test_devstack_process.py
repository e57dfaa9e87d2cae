from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from devstack.process import LaunchSpec, ProcessHandle, in_namespace, running_pid, spawn, stop

# A parent that starts a child in its own process group, then both sleep.
_FAMILY = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "time.sleep(60)  # marker-{marker}"
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[-1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def test_spawn_records_the_pid_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    marker = f"marker-{tmp_path.name}"
    handle = ProcessHandle(tmp_path / "svc.pid", marker, signal.SIGTERM, 5.0)
    launch = LaunchSpec(
        argv=[sys.executable, "-c", _FAMILY.format(marker=tmp_path.name)],
        log_file=tmp_path / "svc.log",
    )
    pid = spawn(launch, handle)
    assert running_pid(handle) == pid
    for _ in range(100):
        children = _children(pid)
        if children:
            break
        time.sleep(0.05)
    assert children, "the child process did not start"
    assert os.getpgid(pid) == pid  # its own session, so its own group

    assert stop(handle) is True
    os.waitpid(pid, 0)  # reap, as init would
    assert not any(_alive(child) for child in children)
    assert not handle.pid_file.exists()
    assert stop(handle) is False


def test_a_recycled_pid_is_never_taken_for_the_service(tmp_path: Path) -> None:
    # The pid file names a live process that is not the service (this test process).
    handle = ProcessHandle(tmp_path / "svc.pid", "no-such-marker-" + tmp_path.name)
    handle.pid_file.write_text(f"{os.getpid()}\n")
    assert running_pid(handle) is None
    assert stop(handle) is False  # and so it is not signalled
    assert not handle.pid_file.exists()


def test_a_garbled_pid_file_means_not_running(tmp_path: Path) -> None:
    handle = ProcessHandle(tmp_path / "svc.pid", "anything")
    handle.pid_file.write_text("not a pid\n")
    assert running_pid(handle) is None


def test_a_service_in_a_namespace_enters_it_first_then_drops_to_its_user(tmp_path: Path) -> None:
    spec = LaunchSpec(["postgres", "-D", "data"], tmp_path / "log", user="postgres")
    inside = in_namespace(spec, "iotf-postgres")
    assert inside.argv == [
        "ip", "netns", "exec", "iotf-postgres",
        "setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups",
        "postgres", "-D", "data",
    ]  # fmt: skip
    assert inside.user is None  # setns needs root: the user is dropped inside
    rootly = in_namespace(LaunchSpec(["kafka"], tmp_path / "log"), "iotf-kafka")
    assert rootly.argv == ["ip", "netns", "exec", "iotf-kafka", "kafka"]
