"""The schemas kept in schemas/: layout, contents, history compatibility, and schema parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts.avro import (
    CatalogError,
    CompatibilityMode,
    SchemaCatalog,
    SchemaParseError,
    check_compatibility,
    parse_schema,
)
from contracts.topics import PLATFORM_TOPICS

CATALOG = SchemaCatalog.load()
SUBJECTS = {
    "iot.telemetry.v1-value": "Telemetry",
    "iot.device-events.v1-value": "DeviceEvent",
    "iot.alerts.v1-value": "Alert",
    "iot.commands.v1-value": "Command",
}
NAMESPACE = "io.iot_telemetry"
TIMESTAMP_MILLIS = {"type": "long", "logicalType": "timestamp-millis"}


def fields_of(subject: str, version: int | None = None) -> dict[str, dict[str, Any]]:
    versions = CATALOG.versions(subject)
    schema = versions[-1 if version is None else version - 1].schema
    return {f["name"]: f for f in schema.definition["fields"]}


def test_subjects_follow_the_topic_name_strategy() -> None:
    assert set(CATALOG.subject_names) == set(SUBJECTS)
    assert set(SUBJECTS) <= {f"{topic.name}-value" for topic in PLATFORM_TOPICS}
    for name, record_name in SUBJECTS.items():
        assert CATALOG.latest(name).name == f"{NAMESPACE}.{record_name}"
        expected = (
            CompatibilityMode.FULL_TRANSITIVE
            if name == "iot.telemetry.v1-value"
            else CompatibilityMode.BACKWARD
        )
        assert CATALOG.compatibility(name) is expected


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_history_is_compatible_under_the_subject_mode(subject: str) -> None:
    checks = CATALOG.subject(subject).check()
    assert len(checks) == len(CATALOG.versions(subject)) - 1
    assert all(check.compatible for check in checks), [c.result for c in checks]


@pytest.mark.parametrize("subject", sorted(SUBJECTS))
def test_every_record_and_field_is_documented(subject: str) -> None:
    for version in CATALOG.versions(subject):
        definition = version.schema.definition
        assert definition["namespace"] == NAMESPACE
        assert definition["doc"]
        assert all(f.get("doc") for f in definition["fields"]), version.path


def test_catalog_check_covers_every_evolution() -> None:
    checks = CATALOG.check()
    assert [(c.subject, c.version) for c in checks] == [
        ("iot.telemetry.v1-value", 2),
        ("iot.telemetry.v1-value", 3),
    ]
    assert all(c.compatible for c in checks)


def test_telemetry_v2_is_a_real_evolution_of_v1() -> None:
    v1, v2 = fields_of("iot.telemetry.v1-value", 1), fields_of("iot.telemetry.v1-value", 2)
    assert set(v2) - set(v1) == {"attributes"}
    assert v2["attributes"]["type"] == {"type": "map", "values": "string"}
    assert v2["attributes"]["default"] == {}
    history = [v.schema for v in CATALOG.versions("iot.telemetry.v1-value")]
    assert check_compatibility(
        history[1], history[:1], CompatibilityMode.FULL_TRANSITIVE
    ).compatible


def test_telemetry_contract() -> None:
    fields = fields_of("iot.telemetry.v1-value")
    assert list(fields) == [
        "event_id",
        "device_id",
        "ts",
        "received_at",
        "seq",
        "boot",
        "metrics",
        "attributes",
        "ts_stamped",
    ]
    assert fields["event_id"]["type"] == fields["device_id"]["type"] == "string"
    assert fields["ts"]["type"] == fields["received_at"]["type"] == TIMESTAMP_MILLIS
    assert fields["seq"]["type"] == ["null", "long"]
    assert fields["seq"]["default"] is None
    assert fields["metrics"]["type"] == {"type": "map", "values": "double"}
    assert fields["boot"]["type"] == ["null", "long"]
    assert fields["ts_stamped"] == {**fields["ts_stamped"], "type": "boolean", "default": False}


def test_telemetry_evolves_both_ways() -> None:
    """Gateways may be upgraded before the stream workers: every version must read every
    other (FULL_TRANSITIVE), and the subject's mode makes the registry refuse one that does
    not (e.g. a version dropping received_at, which BACKWARD alone would let through)."""
    history = [v.schema for v in CATALOG.versions("iot.telemetry.v1-value")]
    for n in range(1, len(history)):
        assert check_compatibility(
            history[n], history[:n], CompatibilityMode.FULL_TRANSITIVE
        ).compatible


def test_enums_have_defaults_for_evolution() -> None:
    kind = fields_of("iot.device-events.v1-value")["kind"]["type"]
    assert {"REGISTERED", "REVOKED", "CONNECTED", "DISCONNECTED"} <= set(kind["symbols"])
    assert kind["default"] in kind["symbols"]
    state = fields_of("iot.alerts.v1-value")["state"]["type"]
    assert {"RAISED", "CLEARED"} <= set(state["symbols"])
    assert state["default"] in state["symbols"]


def test_alert_and_command_contracts() -> None:
    alert = fields_of("iot.alerts.v1-value")
    assert {
        "event_id",
        "device_id",
        "state",
        "rule",
        "metric",
        "value",
        "threshold",
        "window_ms",
        "ts",
    } <= set(alert)
    command = fields_of("iot.commands.v1-value")
    assert {"command_id", "device_id", "name", "params", "issued_at", "expires_at"} <= set(command)
    assert command["expires_at"]["type"] == ["null", TIMESTAMP_MILLIS]
    assert command["expires_at"]["default"] is None


# --- loading rules, on a scratch catalog --------------------------------------------------------

RECORD_V1 = {
    "type": "record",
    "name": "R",
    "namespace": "t",
    "fields": [{"name": "a", "type": "int"}],
}
RECORD_V2_BREAKING = {**RECORD_V1, "fields": [*RECORD_V1["fields"], {"name": "b", "type": "int"}]}


def write_catalog(root: Path, subjects: str, files: dict[str, Any]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "subjects.yaml").write_text(subjects)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return root


ONE_SUBJECT = "subjects:\n  t-value:\n    family: fam\n"


def test_default_compatibility_applies_and_incompatible_history_is_reported(tmp_path: Path) -> None:
    root = write_catalog(
        tmp_path,
        "default_compatibility: forward_transitive\n" + ONE_SUBJECT,
        {"fam/v1.avsc": RECORD_V1, "fam/v2.avsc": RECORD_V2_BREAKING},
    )
    catalog = SchemaCatalog.load(root)
    assert catalog.compatibility("t-value") is CompatibilityMode.FORWARD_TRANSITIVE
    assert catalog.check()[0].compatible  # old readers ignore the new field
    backward = write_catalog(
        tmp_path / "b",
        ONE_SUBJECT.replace("fam\n", "fam\n    compatibility: BACKWARD\n"),
        {"fam/v1.avsc": RECORD_V1, "fam/v2.avsc": RECORD_V2_BREAKING},
    )
    (check,) = SchemaCatalog.load(backward).check()
    assert not check.compatible
    assert [(i.path, i.version) for i in check.result.incompatibilities] == [("b", 1)]


@pytest.mark.parametrize(
    ("subjects", "files", "message"),
    [
        pytest.param("subjects: [", {}, "invalid YAML", id="bad-yaml"),
        pytest.param("- a\n", {}, "mapping", id="not-a-mapping"),
        pytest.param("subjects: {}\n", {}, "non-empty", id="no-subjects"),
        pytest.param("subjects:\n  t-value: {}\n", {}, "family", id="no-family"),
        pytest.param(ONE_SUBJECT, {}, "does not exist", id="missing-family"),
        pytest.param(ONE_SUBJECT, {"fam/README": "x"}, "no v<N>.avsc", id="empty-family"),
        pytest.param(
            ONE_SUBJECT,
            {"fam/v1.avsc": RECORD_V1, "fam/v3.avsc": RECORD_V1},
            "without gaps",
            id="gap",
        ),
        pytest.param(ONE_SUBJECT, {"fam/latest.avsc": RECORD_V1}, "v<N>.avsc", id="stray-file"),
        pytest.param(ONE_SUBJECT, {"fam/v1.avsc": "{not json"}, "v1.avsc", id="bad-json"),
        pytest.param(ONE_SUBJECT, {"fam/v1.avsc": {"type": "record"}}, "v1.avsc", id="bad-schema"),
        pytest.param(
            ONE_SUBJECT.replace("fam\n", "fam\n    compatibility: SIDEWAYS\n"),
            {"fam/v1.avsc": RECORD_V1},
            "unknown compatibility",
            id="bad-mode",
        ),
    ],
)
def test_inconsistent_catalogs_are_rejected(
    tmp_path: Path, subjects: str, files: dict[str, Any], message: str
) -> None:
    with pytest.raises(CatalogError, match=message) as info:
        SchemaCatalog.load(write_catalog(tmp_path, subjects, files))
    assert info.value.reason == "catalog_invalid"


def test_missing_subjects_file_and_unknown_subject(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read"):
        SchemaCatalog.load(tmp_path)
    with pytest.raises(CatalogError, match="unknown subject"):
        CATALOG.subject("nope-value")


# --- parse_schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("{", "not valid JSON", id="bad-json"),
        pytest.param({"type": "nope"}, "invalid Avro schema", id="unknown-type"),
        pytest.param(
            {"type": "enum", "name": "E", "symbols": ["A"], "default": "B"},
            "symbols",
            id="enum-default",
        ),
        pytest.param(
            {
                "type": "record",
                "name": "R",
                "fields": [
                    {"name": "m", "type": {"type": "map", "values": "long"}, "default": {"k": "v"}}
                ],
            },
            r"R\.m",
            id="map-default",
        ),
    ],
)
def test_invalid_schemas_are_rejected(source: Any, message: str) -> None:
    with pytest.raises(SchemaParseError, match=message):
        parse_schema(source)


def test_parsing_is_cached_and_normalizes_text() -> None:
    compact = parse_schema(RECORD_V1)
    assert parse_schema(json.dumps(RECORD_V1, indent=2)) is compact
    assert compact == parse_schema(json.dumps(RECORD_V1))
    documented = parse_schema({**RECORD_V1, "doc": "described"})
    assert documented != compact
    assert documented.canonical == compact.canonical
    assert documented.fingerprint == compact.fingerprint
    assert len(compact.fingerprint) == 16


def test_defaults_of_every_type_are_accepted_when_valid() -> None:
    fields = [
        {"name": "n", "type": "null", "default": None},
        {"name": "b", "type": "boolean", "default": False},
        {"name": "i", "type": "int", "default": -(2**31)},
        {"name": "l", "type": "long", "default": 2**63 - 1},
        {"name": "f", "type": "float", "default": 1},
        {"name": "s", "type": "string", "default": "x"},
        {"name": "y", "type": "bytes", "default": "\u00ff"},
        {"name": "x", "type": {"type": "fixed", "name": "F", "size": 2}, "default": "ab"},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A"]}, "default": "A"},
        {"name": "a", "type": {"type": "array", "items": "F"}, "default": ["cd"]},
        {"name": "u", "type": ["string", "null"], "default": "first"},
        {
            "name": "r",
            "type": {
                "type": "record",
                "name": "In",
                "fields": [{"name": "q", "type": "int", "default": 1}],
            },
            "default": {},
        },
    ]
    parse_schema({"type": "record", "name": "AllDefaults", "fields": fields})
