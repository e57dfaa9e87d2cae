"""The id grammar every process agrees on: device ids and the other principals' ids.

A **device id** is 1 to :data:`DEVICE_ID_MAX_LENGTH` characters (at most
:data:`PRINCIPAL_ID_MAX_BYTES` bytes of UTF-8) of printable Unicode, with no whitespace,
none of the characters in :data:`FORBIDDEN_IN_IDS` and not ``*``. So it is one MQTT topic
level, a Kafka record key, a Mosquitto and SCRAM username, a Kafka principal and a URL path
segment, all at once, and the gateway, the policy, the device registry and the query API
accept exactly the same ids. Other principals (services, API clients) follow the same
grammar without the character limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "DEVICE_ID_MAX_LENGTH",
    "FORBIDDEN_IN_IDS",
    "PRINCIPAL_ID_MAX_BYTES",
    "WILDCARD",
    "device_id_problem",
    "id_problem",
]

DEVICE_ID_MAX_LENGTH = 128
"""Characters in a device id at most."""

PRINCIPAL_ID_MAX_BYTES = 255
"""UTF-8 bytes in a principal id at most (Kafka's and Mosquitto's limits are larger)."""

FORBIDDEN_IN_IDS: Mapping[str, str] = MappingProxyType(
    {
        "/": "a topic level separator",
        "+": "an MQTT wildcard",
        "#": "an MQTT wildcard",
        ",": "a separator in Kafka principal lists and SCRAM",
        ";": "the separator of Kafka's super.users",
        ":": "the separator of Mosquitto's password_file and of Kafka principals",
        "\x00": "NUL",
    }
)
"""Characters no id may hold, each with the reason."""

WILDCARD = "*"
"""As a policy selector: every principal (so no id can be it)."""


def id_problem(value: str, *, max_bytes: int = PRINCIPAL_ID_MAX_BYTES) -> str | None:
    """Why ``value`` cannot be an id, or None if it can (the grammar above)."""
    if not value:
        return "must not be empty"
    if value == WILDCARD:
        return "'*' means every principal and cannot be an id"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid UTF-8"
    if size > max_bytes:
        return f"must be at most {max_bytes} bytes"
    for char, why in FORBIDDEN_IN_IDS.items():
        if char in value:
            return f"must not contain {char!r} ({why})"
    if any(char.isspace() or not char.isprintable() for char in value):
        return "must not contain whitespace or control characters"
    return None


def device_id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a device id, or None if it can."""
    if len(value) > DEVICE_ID_MAX_LENGTH:
        return f"must be at most {DEVICE_ID_MAX_LENGTH} characters"
    return id_problem(value)
