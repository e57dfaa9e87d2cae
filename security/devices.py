"""Registered devices: who may connect to Mosquitto as a ``kind: device`` principal.

``add`` generates a password and returns it: it is shown once and never written anywhere;
the store keeps only its Mosquitto ``$7$`` hash (PBKDF2-SHA512). ``revoke`` forgets the
device. Device ids are validated exactly like policy principal ids. The store is one JSON
file (mode 0600) replaced atomically under a file lock, so concurrent ``iotctl devices``
commands never lose each other's changes.

Changing the store does not reach the broker by itself: the caller regenerates Mosquitto's
files and reloads it (``devstack.secured.sync_mosquitto``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from contracts.identifiers import device_id_problem
from policy import hash_password, verify_password
from security.credentials import new_password
from security.errors import DeviceError, InvalidIdError, StoreError
from security.files import locked, private_dir, read_json, write_json

__all__ = ["DeviceStore", "IssuedDevice", "RegisteredDevice", "check_device_id"]


def check_device_id(device_id: str) -> str:
    """``device_id`` if it is a device id (:mod:`contracts.identifiers`), else InvalidIdError."""
    problem = device_id_problem(device_id)
    if problem is not None:
        raise InvalidIdError(f"invalid device id {device_id!r}: it {problem}")
    return device_id


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    device_id: str
    added_at: str
    """UTC, ISO 8601."""


@dataclass(frozen=True, slots=True)
class IssuedDevice:
    """The answer of :meth:`DeviceStore.add`: the only time the password exists in clear."""

    device: RegisteredDevice
    password: str = field(repr=False)


class DeviceStore:
    """Devices and their password hashes, in ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, dict[str, str]]:
        data = read_json(self.path, "devices")
        devices = data.get("devices", {})
        if not isinstance(devices, dict):
            raise StoreError(f"the devices file {self.path} is damaged")
        for device_id, entry in devices.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("password_hash"), str):
                raise StoreError(f"the devices file {self.path} has a damaged entry {device_id!r}")
        return devices

    def add(self, device_id: str) -> IssuedDevice:
        """Registers ``device_id`` with a new password; DeviceError if it is registered."""
        return self.add_many([device_id])[0]

    def add_many(self, device_ids: Sequence[str], *, reissue: bool = False) -> list[IssuedDevice]:
        """Registers every id in one write; an id already registered is a DeviceError unless
        ``reissue``, which gives it a new password (the old one stops working)."""
        for device_id in device_ids:
            check_device_id(device_id)
        private_dir(self.path.parent)
        issued: list[IssuedDevice] = []
        with locked(self.path):
            devices = self._load()
            taken = [device_id for device_id in device_ids if device_id in devices]
            if taken and not reissue:
                raise DeviceError(
                    f"device {taken[0]!r} is already registered; revoke it first to issue "
                    "a new password"
                )
            added_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            for device_id in device_ids:
                password = new_password()
                devices[device_id] = {
                    "password_hash": hash_password(password),
                    "added_at": added_at,
                }
                issued.append(IssuedDevice(RegisteredDevice(device_id, added_at), password))
            write_json(self.path, {"devices": devices})
        return issued

    def revoke(self, device_id: str) -> RegisteredDevice:
        """Forgets ``device_id``; DeviceError if it is not registered."""
        check_device_id(device_id)
        private_dir(self.path.parent)
        with locked(self.path):
            devices = self._load()
            entry = devices.pop(device_id, None)
            if entry is None:
                raise DeviceError(f"device {device_id!r} is not registered")
            write_json(self.path, {"devices": devices})
        return RegisteredDevice(device_id, entry.get("added_at", ""))

    def list(self) -> tuple[RegisteredDevice, ...]:
        """Registered devices, sorted by id."""
        return tuple(
            RegisteredDevice(device_id, entry.get("added_at", ""))
            for device_id, entry in sorted(self._load().items())
        )

    def hashes(self) -> dict[str, str]:
        """Mosquitto password hashes by device id."""
        return {device_id: entry["password_hash"] for device_id, entry in self._load().items()}

    def verify(self, device_id: str, password: str) -> bool:
        """True iff ``device_id`` is registered with ``password`` (constant-time compare)."""
        entry = self._load().get(device_id)
        return entry is not None and verify_password(password, entry["password_hash"])
