"""Mosquitto enforcement: the broker's password_file and acl_file, installed and reloaded.

The texts come from the policy engine's generators (:func:`generate_password_file`,
:func:`generate_acl_file`), so the broker decides as :class:`Authorizer` does. Files are
replaced atomically and owned by the broker's system user (it re-reads them after dropping
privileges), mode 0600.

Reload is ``SIGHUP`` to the broker's pid: Mosquitto 2.0.11 re-reads both files without
restarting, re-applies ACLs to connected clients, and disconnects every connected client
whose username is no longer in the password file (``mosquitto_security_apply``); such a
client's reconnect gets CONNACK 0x87 "Not authorized". So revocation needs no extra kick.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from policy import Policy, generate_acl_file, generate_password_file
from security.errors import ApplyError
from security.files import atomic_write
from security.tls import TlsFiles

__all__ = [
    "BrokerFiles",
    "BrokerLayout",
    "install_tls",
    "password_file_users",
    "reload_broker",
    "render",
]


@dataclass(frozen=True, slots=True)
class BrokerLayout:
    """Where the broker's security files live inside its home folder."""

    home: Path

    @property
    def password_file(self) -> Path:
        return self.home / "passwords"

    @property
    def acl_file(self) -> Path:
        return self.home / "acl"

    @property
    def tls(self) -> TlsFiles:
        tls = self.home / "tls"
        return TlsFiles(tls / "ca.crt", tls / "server.crt", tls / "server.key")


@dataclass(frozen=True, slots=True)
class BrokerFiles:
    """The generated texts; ``users`` are the usernames that can log in."""

    password_file: str
    acl_file: str

    @property
    def users(self) -> frozenset[str]:
        return password_file_users(self.password_file)

    def install(self, layout: BrokerLayout, owner: str | None) -> bool:
        """Writes both files atomically (acl first: a user never exists without ACLs).

        Returns True if either changed.
        """
        acl = atomic_write(layout.acl_file, self.acl_file.encode(), owner=owner)
        passwords = atomic_write(layout.password_file, self.password_file.encode(), owner=owner)
        return acl or passwords


def render(policy: Policy, hashes: Mapping[str, str]) -> BrokerFiles:
    """Both files for ``policy``; ``hashes`` maps usernames to ``$7$`` hashes.

    Raises the engine's GenerationError (with the rule's line) when Mosquitto could not
    decide like the engine, or a username with a hash is not in the policy.
    """
    return BrokerFiles(generate_password_file(hashes, policy), generate_acl_file(policy))


def password_file_users(text: str) -> frozenset[str]:
    """Usernames in a password_file text."""
    return frozenset(
        line.split(":", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    )


def install_tls(source: TlsFiles, layout: BrokerLayout, owner: str | None) -> bool:
    """Copies the CA, certificate and key where the broker (running as ``owner``) reads them."""
    changed = False
    target = layout.tls
    target.ca_cert.parent.mkdir(parents=True, exist_ok=True)
    if owner is not None:
        shutil.chown(target.ca_cert.parent, owner, owner)
    os.chmod(target.ca_cert.parent, 0o700)
    for src, dst, mode in (
        (source.ca_cert, target.ca_cert, 0o644),
        (source.server_cert, target.server_cert, 0o644),
        (source.server_key, target.server_key, 0o600),
    ):
        changed |= atomic_write(dst, src.read_bytes(), mode=mode, owner=owner)
    return changed


def reload_broker(pid: int) -> None:
    """Sends SIGHUP: Mosquitto re-reads its config, password_file and acl_file in place."""
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError as exc:
        raise ApplyError(f"the broker (pid {pid}) is gone; start it with `iotctl dev up`") from exc
