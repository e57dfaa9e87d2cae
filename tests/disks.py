"""Small disks for tests that fill them: a tmpfs of a given size, mounted (as root, which
the test machines are) for the test and removed after it, so a write fails with a real
ENOSPC."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "1m") -> Iterator[Path]:
    """``folder`` (made if need be) as a tmpfs of ``size`` (``mount`` syntax), private."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size},mode=0700"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def resize(folder: Path, size: str) -> None:
    """Gives the mounted ``folder`` a new size (room again, without touching its files)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Writes a file until the disk is full; returns it (delete it to make room)."""
    filler = folder / "filler"
    block = b"\0" * 4096
    with filler.open("wb", buffering=0) as out, contextlib.suppress(OSError):
        while out.write(block):
            pass
    return filler
