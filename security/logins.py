"""Who may log in to the gateway's own MQTT server: a password file, re-read when it changes.

The file is the one the policy renders for Mosquitto (``username:$7$…`` lines, see
:func:`policy.generate_password_file`): devices and service principals, hashes only. A
successful check is remembered (keyed by the hash it matched and a digest of the password),
so a device reconnecting does not pay PBKDF2 again; a changed or revoked entry is never
matched from memory, because the hash it was remembered with is gone.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

from policy import verify_password

__all__ = ["PasswordFile"]

log = logging.getLogger("security")

REMEMBERED_LOGINS = 65_536
"""Successful checks kept; the oldest is forgotten first."""


class PasswordFile:
    """Usernames and password hashes from ``path``, reloaded (checked at most every
    ``check_every_s``) when the file changes. A file that cannot be read keeps the last good
    contents in force; at start-up a missing file is an error, so the server never runs open.
    """

    def __init__(
        self,
        path: Path,
        *,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._check_every_s = check_every_s
        self._clock = clock
        self._stamp = path.stat().st_mtime_ns
        self._hashes = _parse(path.read_text(encoding="utf-8"))
        self._checked_at = clock()
        self._remembered: dict[tuple[str, str, bytes], None] = {}

    @property
    def users(self) -> frozenset[str]:
        """Usernames that can log in now."""
        self._maybe_refresh()
        return frozenset(self._hashes)

    def verify(self, username: str, password: bytes) -> bool:
        """True iff ``username`` is in the file and ``password`` matches its hash."""
        self._maybe_refresh()
        encoded = self._hashes.get(username)
        if encoded is None and self.refresh():  # added a moment ago
            encoded = self._hashes.get(username)
        if encoded is None:
            return False
        memo = (username, encoded, hashlib.sha256(password).digest())
        if memo in self._remembered:
            return True
        try:
            text = password.decode("utf-8")
        except UnicodeDecodeError:
            return False
        if not verify_password(text, encoded):
            return False
        if len(self._remembered) >= REMEMBERED_LOGINS:
            del self._remembered[next(iter(self._remembered))]
        self._remembered[memo] = None
        return True

    def _maybe_refresh(self) -> None:
        if self._clock() - self._checked_at >= self._check_every_s:
            self.refresh()

    def refresh(self) -> bool:
        """Reads the file again if it changed; True if its contents were replaced."""
        self._checked_at = self._clock()
        try:
            stamp = self.path.stat().st_mtime_ns
            if stamp == self._stamp:
                return False
            hashes = _parse(self.path.read_text(encoding="utf-8"))
        except OSError as exc:
            log.warning("password file %s not reloaded, the previous one stays: %s", self.path, exc)
            return False
        self._stamp, self._hashes = stamp, hashes
        log.info("password file reloaded from %s (%d users)", self.path, len(hashes))
        return True


def _parse(text: str) -> dict[str, str]:
    hashes: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        username, encoded = line.split(":", 1)
        hashes[username] = encoded.strip()
    return hashes
