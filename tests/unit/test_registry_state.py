"""The registry's state machine: deterministic, total on any log record, Confluent rules."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.avro import CompatibilityMode, parse_schema
from contracts.registry import (
    IncompatibleSchemaError,
    InvalidCompatibilityError,
    InvalidSchemaError,
    InvalidVersionError,
    RegistryError,
    RegistryUnavailableError,
    SchemaNotFoundError,
)
from contracts.registry.errors import error_for_code
from contracts.registry.port import parse_mode, parse_version
from contracts.registry.state import (
    Command,
    DeleteSubject,
    DeleteVersion,
    Register,
    RegistryState,
    SetCompatibility,
    decode_command,
    encode_command,
)


def text(*names: str, default: bool = True) -> str:
    extra = {"default": 0} if default else {}
    fields = [{"name": "x", "type": "int"}, *({"name": n, "type": "int", **extra} for n in names)]
    return parse_schema({"type": "record", "name": "R", "fields": fields}).text


subjects = st.sampled_from(["a-value", "b-value", "c-value"])
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        Register,
        subjects,
        st.builds(
            lambda names, default: text(*sorted(names), default=default),
            st.sets(st.sampled_from(["p", "q", "r"])),
            st.booleans(),
        ),
    ),
    st.builds(
        SetCompatibility,
        st.one_of(st.none(), subjects),
        st.one_of(st.none(), st.sampled_from(list(CompatibilityMode))),
    ),
    st.builds(
        DeleteVersion, subjects, st.one_of(st.just("latest"), st.integers(1, 4)), st.booleans()
    ),
    st.builds(DeleteSubject, subjects, st.booleans()),
)


def run(log: list[bytes]) -> tuple[RegistryState, list[str]]:
    """Folds a log the way every embedded process does; returns the state and outcomes."""
    state, outcomes = RegistryState(), []
    for record in log:
        try:
            outcomes.append(repr(state.apply(decode_command(record))))
        except RegistryError as exc:
            outcomes.append(f"{type(exc).__name__}: {exc}")
    return state, outcomes


def observable(state: RegistryState) -> Any:
    return (
        state.get_compatibility(),
        [(s, state.subject_compatibility(s), [state.version(s, v) for v in state.versions(s)])
         for s in state.subjects()],
    )  # fmt: skip


@given(st.lists(commands, max_size=30))
def test_folding_the_same_log_twice_gives_the_same_state_and_outcomes(log: list[Command]) -> None:
    records = [encode_command(command) for command in log]
    first, first_outcomes = run(records)
    second, second_outcomes = run(records)
    assert first_outcomes == second_outcomes
    assert observable(first) == observable(second)


@given(commands)
def test_commands_survive_the_log_format(command: Command) -> None:
    assert decode_command(encode_command(command)) == command


@pytest.mark.parametrize(
    "record",
    [
        None,
        b"",
        b"\xff",
        b"[]",
        b'{"op":"Register"}',
        b'{"format":2,"op":"Register","subject":"a","schema":"\\"int\\""}',
        b'{"format":1,"op":"Drop"}',
        b'{"format":1,"op":"Register","subject":"","schema":"\\"int\\""}',
        b'{"format":1,"op":"SetCompatibility","subject":null,"mode":"SIDEWAYS"}',
        b'{"format":1,"op":"DeleteVersion","subject":"a","version":0,"permanent":false}',
    ],
)
def test_malformed_records_are_rejected_as_data(record: bytes | None) -> None:
    with pytest.raises(InvalidSchemaError, match="malformed"):
        decode_command(record)


def test_invalid_schema_text_is_rejected_by_the_fold_and_changes_nothing() -> None:
    state = RegistryState()
    with pytest.raises(InvalidSchemaError):
        state.apply(Register("a-value", '{"type": "record"}'))
    assert state.subjects() == ()
    assert state.apply(Register("a-value", text())).schema_id == 1  # type: ignore[union-attr]


def test_ids_are_never_reused_after_a_permanent_delete() -> None:
    state = RegistryState()
    state.apply(Register("a-value", text()))
    state.apply(DeleteSubject("a-value", permanent=False))
    state.apply(DeleteSubject("a-value", permanent=True))
    later = state.apply(Register("b-value", text("p")))
    assert later.schema_id == 2  # type: ignore[union-attr]
    assert state.writer_schema(1) is not None  # frames written with id 1 stay decodable
    assert state.id_usages(1) == ()


def test_incompatibility_names_the_real_version_number() -> None:
    state = RegistryState()
    state.apply(SetCompatibility(None, CompatibilityMode.BACKWARD_TRANSITIVE))
    state.apply(Register("a-value", text()))
    state.apply(Register("a-value", text("p")))
    state.apply(DeleteVersion("a-value", 1, permanent=False))
    with pytest.raises(IncompatibleSchemaError, match="version 2") as caught:
        state.apply(Register("a-value", text("p", "q", default=False)))
    assert [i.version for i in caught.value.incompatibilities] == [2]
    assert caught.value.incompatibilities[0].path == "q"


def test_lookups_answer_only_live_versions() -> None:
    state = RegistryState()
    registered = state.apply(Register("a-value", text()))
    schema = registered.schema  # type: ignore[union-attr]
    assert state.lookup("a-value", schema).schema_id == 1  # type: ignore[union-attr]
    assert state.lookup("b-value", schema) is None
    state.apply(DeleteVersion("a-value", "latest", permanent=False))
    assert state.lookup("a-value", schema) is None
    assert state.writer_schema(1) == schema
    with pytest.raises(SchemaNotFoundError):
        state.schema_by_id(2)


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("latest", "latest"), (-1, "latest"), ("-1", "latest"), ("7", 7), (2**31 - 1, 2**31 - 1)],
)
def test_versions_parse_like_confluent(raw: object, parsed: object) -> None:
    assert parse_version(raw) == parsed


@pytest.mark.parametrize("raw", [0, -2, "0", "x", "1.5", 2**31, True, None, 1.0])
def test_bad_versions_are_42202(raw: object) -> None:
    with pytest.raises(InvalidVersionError) as caught:
        parse_version(raw)
    assert caught.value.error_code == 42202


def test_levels_parse_in_any_case_and_bad_ones_are_42203() -> None:
    assert parse_mode("full_transitive") is CompatibilityMode.FULL_TRANSITIVE
    with pytest.raises(InvalidCompatibilityError) as caught:
        parse_mode("STRICT")
    assert caught.value.error_code == 42203


def test_error_codes_round_trip_and_unknown_ones_fall_back_on_the_status() -> None:
    assert error_for_code(40403, 404) is SchemaNotFoundError
    assert error_for_code(409, 409) is IncompatibleSchemaError
    assert error_for_code(12345, 409) is IncompatibleSchemaError
    assert error_for_code(99, 503) is RegistryUnavailableError
    assert error_for_code(99, 503).retriable
    assert not error_for_code(40401, 404).retriable


def test_the_log_format_is_compact_json_with_a_format_number() -> None:
    body = json.loads(encode_command(SetCompatibility("a-value", CompatibilityMode.FULL)))
    assert body == {"format": 1, "op": "SetCompatibility", "subject": "a-value", "mode": "FULL"}


_FOLD_SCRIPT = """
import json
from contracts.avro import CompatibilityMode, parse_schema
from contracts.registry.errors import IncompatibleSchemaError
from contracts.registry.state import *

def rec(*fields):
    return parse_schema({"type": "record", "name": "R", "fields": list(fields)}).text

def enum(*symbols):
    return {"name": "e", "type": {"type": "enum", "name": "E", "symbols": list(symbols)}}

state = RegistryState()
log = [
    Register("a", rec({"name": "x", "type": "int"}, enum(*"ABCDEFG"))),
    SetCompatibility("a", CompatibilityMode.FULL_TRANSITIVE),
    Register("a", rec({"name": "x", "type": "string"}, enum("A"), {"name": "n", "type": "int"})),
    Register("b", rec({"name": "x", "type": "int"})),
    Register("a", rec({"name": "x", "type": "long"}, enum(*"ABCDEFGH"))),
]
for command in log:
    try:
        result = state.apply(decode_command(encode_command(command)))
        print(json.dumps({"accepted": repr(result)}))
    except IncompatibleSchemaError as exc:
        issues = [(i.path, i.reason, i.version) for i in exc.incompatibilities]
        messages = [str(exc), *(i.message for i in exc.incompatibilities)]
        print(json.dumps({"rejected": issues, "messages": messages}))
"""


@functools.cache
def _fold_in_processes_with_different_hash_seeds() -> tuple[list[dict[str, Any]], ...]:
    runs = []
    for seed in ("1", "2", "3", "4", "5", "6"):
        out = subprocess.run(
            [sys.executable, "-c", _FOLD_SCRIPT],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        runs.append([json.loads(line) for line in out.splitlines()])
    return tuple(runs)


def test_fold_decisions_do_not_depend_on_the_processes_hash_seed() -> None:
    runs = _fold_in_processes_with_different_hash_seeds()
    decisions = [[{k: v for k, v in o.items() if k != "messages"} for o in run] for run in runs]
    assert all(run == decisions[0] for run in decisions)
    kinds = [next(iter(outcome)) for outcome in decisions[0]]
    assert kinds == ["accepted", "accepted", "rejected", "accepted", "rejected"]


def test_rejection_messages_do_not_depend_on_the_processes_hash_seed() -> None:
    runs = _fold_in_processes_with_different_hash_seeds()
    messages = [[o.get("messages") for o in run] for run in runs]
    assert all(run == messages[0] for run in messages)
