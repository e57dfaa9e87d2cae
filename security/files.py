"""Small, careful file primitives for state that holds secrets.

* :func:`atomic_write` replaces a file in one ``rename``: a reader sees the old or the new
  content, never a mix; the data is fsynced before the rename and the folder after it.
* :func:`locked` serializes read-modify-write cycles between processes (``flock``).
* Files are created with the mode asked for (``0600`` for secrets) before any byte is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from security.errors import StoreError


def chown_to(path: Path, user: str | None) -> None:
    """Gives ``path`` to ``user``; nothing when ``user`` is None."""
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def private_dir(path: Path) -> Path:
    """``path`` as a folder only its owner can enter (0700); created if missing."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600, owner: str | None = None) -> bool:
    """Writes ``data`` to ``path`` atomically; returns False (and writes nothing) if the file
    already holds exactly ``data`` with this mode. ``owner`` is a system user to give it to."""
    try:
        current = path.stat()
        same_owner = owner is None or current.st_uid == pwd.getpwnam(owner).pw_uid
        if same_owner and (current.st_mode & 0o777) == mode and path.read_bytes() == data:
            return False
    except (OSError, KeyError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        chown_to(Path(temporary), owner)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return True


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``<path>.lock`` (blocking) for the ``with`` body.

    Not re-entrant: never nest two ``locked`` blocks on the same path in one process.
    """
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def read_json(path: Path, kind: str) -> dict[str, Any]:
    """The JSON object in ``path`` with ``"version": 1``; ``{}`` when the file is missing."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise StoreError(f"cannot read the {kind} file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StoreError(f"the {kind} file {path} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict) or data.get("version") != 1:
        raise StoreError(f"the {kind} file {path} was not written by this version of iotctl")
    return data


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Writes ``data`` (with ``"version": 1``) atomically, mode 0600."""
    body = json.dumps({"version": 1, **data}, indent=2, sort_keys=True, ensure_ascii=False)
    atomic_write(path, (body + "\n").encode())
