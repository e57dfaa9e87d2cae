"""Credentials of a fleet of simulated devices: each device logs in as itself.

A real device keeps its password in its own storage; a simulated fleet keeps them in one
private file (mode 0600) next to the simulator's state. Provisioning registers every device
that has no working password yet (one broker reload for the whole fleet) and writes the new
passwords to that file; devices already in the file and still registered are left alone, so
starting the simulator again costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from devstack.secured import SecuredStack
from security.errors import StoreError
from security.files import locked, private_dir, read_json, write_json

__all__ = ["provision_fleet", "read_fleet"]


def read_fleet(path: Path) -> dict[str, str]:
    """Passwords by device id from a fleet file; StoreError if it is damaged."""
    devices = read_json(path, "fleet credentials").get("devices", {})
    if not isinstance(devices, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in devices.items()
    ):
        raise StoreError(f"the fleet credentials file {path} is damaged")
    return devices


def provision_fleet(stack: SecuredStack, device_ids: Sequence[str], path: Path) -> dict[str, str]:
    """Makes every device of ``device_ids`` able to log in; returns their passwords."""
    private_dir(path.parent)
    with locked(path):
        known = read_fleet(path)
        registered = stack.devices.hashes()
        missing = [d for d in device_ids if d not in known or d not in registered]
        if missing:
            issued, _ = stack.add_devices(missing, reissue=True)
            known.update({item.device.device_id: item.password for item in issued})
            write_json(path, {"devices": known})
    return {device_id: known[device_id] for device_id in device_ids}
