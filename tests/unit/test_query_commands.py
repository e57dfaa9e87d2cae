"""Commands over HTTP: the request body is checked, and a command id is sent once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streams.query.commands import MAX_TTL_S, CommandOutbox, parse_command
from streams.query.errors import BadParameterError
from streams.store.sqlite import SqliteStore


def test_a_command_request_becomes_what_the_device_receives() -> None:
    body = {"name": "reboot", "params": {"delay_s": "5"}, "ttl_s": 60, "command_id": "c-1"}
    command = parse_command("dev-1", body, 1_000)
    assert (command.command_id, command.device_id, command.name) == ("c-1", "dev-1", "reboot")
    assert command.params == {"delay_s": "5"}
    assert (command.issued_at, command.expires_at) == (1_000, 61_000)
    assert parse_command("dev-1", {"name": "x"}, 0).expires_at is None
    assert parse_command("dev-1", {"name": "x"}, 0).command_id  # a new one is made


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ([], "body"),
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": 3}, "name"),
        ({"name": "x", "params": {"a": 1}}, "params.a"),
        ({"name": "x", "params": ["a"]}, "params"),
        ({"name": "x", "ttl_s": 0}, "ttl_s"),
        ({"name": "x", "ttl_s": MAX_TTL_S + 1}, "ttl_s"),
        ({"name": "x", "ttl_s": True}, "ttl_s"),
        ({"name": "x", "ttl_s": None}, "ttl_s"),
        ({"name": "x", "command_id": ""}, "command_id"),
        ({"name": "x", "command_id": None}, "command_id"),
        ({"name": "x", "colour": "red"}, "colour"),
    ],
)
def test_a_bad_request_names_the_field(body: Any, parameter: str) -> None:
    with pytest.raises(BadParameterError) as caught:
        parse_command("dev-1", body, 0)
    assert caught.value.parameter == parameter


def test_a_command_id_is_appended_to_the_outbox_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.migrate()
    try:
        outbox = CommandOutbox(store, "iot.commands.v1")
        command = parse_command("dev-1", {"name": "reboot", "command_id": "c-1"}, 1_000)
        first, again = outbox.send(command), outbox.send(command)
        assert (first.applied, again.applied) == (True, False)
        with store.claim(10) as claim:
            (record,) = claim.records
        assert (record.event.topic, record.event.key) == ("iot.commands.v1", "dev-1")
        assert record.event.payload["name"] == "reboot"
        assert record.event.payload["expires_at"] is None
    finally:
        store.close()
