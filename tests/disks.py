"""Small disks for tests that fill them: a tmpfs of a given size, mounted (as root, which
the test machines are) for the test and removed after it, so a write fails with a real
ENOSPC."""

from __future__ import annotations

import contextlib
import os
import pwd
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "1m", owner: str | None = None) -> Iterator[Path]:
    """``folder`` (made if need be) as a tmpfs of ``size`` (``mount`` syntax), private to
    ``owner`` (a user name; the mounting user when None)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700"
    if owner is not None:
        account = pwd.getpwnam(owner)
        options += f",uid={account.pw_uid},gid={account.pw_gid}"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder: Path, size: str) -> None:
    """Gives the mounted ``folder`` a new size (room again, without touching its files)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Takes every free block of the disk with one file; returns it (delete it to make room).
    The blocks are allocated, not written: a gigabyte takes a fraction of a second."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        free = os.statvfs(folder)
        with contextlib.suppress(OSError):
            os.posix_fallocate(out.fileno(), 0, free.f_bavail * free.f_frsize)
        with contextlib.suppress(OSError):  # whatever is left (nothing, on a tmpfs)
            while out.write(b"\0" * 4096):
                pass
    return filler
