"""Folders for services that run as their own system user (``postgres``, ``mosquitto``).

Servers started by root drop to an unprivileged user (PostgreSQL insists on it). That user
must be able to reach the service's folder; a checkout under ``/root`` is not reachable, so
such a folder is made under ``/var/tmp`` instead and linked from ``.local/``.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import subprocess
from pathlib import Path

from devstack.errors import ServiceStartError
from security.files import chown_to


def service_user(name: str) -> str | None:
    """``name`` when we are root (the server must drop to it), else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise ServiceStartError(
            f"the `{name}` system user is missing; installing the Debian package creates it "
            "(`make up` does)"
        ) from None
    return name


def _writable_by(user: str, path: Path) -> bool:
    result = subprocess.run(
        ["test", "-w", str(path)], user=user, group=user, extra_groups=[], check=False
    )
    return result.returncode == 0


def owned_dir(path: Path, user: str | None) -> None:
    """Makes ``path`` a folder that ``user`` can write, moving it out of reach of /root if needed.

    Idempotent: an existing folder or link is left as it is.
    """
    if path.exists() or path.is_symlink():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.mkdir()
    if user is None:
        return
    chown_to(path, user)
    if _writable_by(user, path):
        return
    path.rmdir()
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    # A fixed, per-checkout name (not a temp file): later runs must find the same folder.
    outside = Path("/var/tmp") / f"iot-telemetry-{digest}" / path.name  # noqa: S108
    outside.mkdir(parents=True, exist_ok=True)
    os.chmod(outside.parent, 0o755)  # noqa: S103 - the service user must traverse it
    chown_to(outside, user)
    path.symlink_to(outside, target_is_directory=True)
