"""``iotctl schemas`` and registry settings, without services (Kafka paths: integration)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from contracts.registry import (
    ConfluentSchemaRegistry,
    EmbeddedSchemaRegistry,
    RegistrySettings,
    RegistryUnavailableError,
)
from iotctl.main import main


def write_catalog(root: Path, mode: str, *versions: dict[str, Any]) -> Path:
    (root / "reading").mkdir(parents=True)
    (root / "subjects.yaml").write_text(
        f"subjects:\n  readings-value:\n    family: reading\n    compatibility: {mode}\n"
    )
    for number, definition in enumerate(versions, start=1):
        (root / "reading" / f"v{number}.avsc").write_text(json.dumps(definition))
    return root


def reading(*extra: dict[str, Any]) -> dict[str, Any]:
    fields = [{"name": "x", "type": "int"}, *extra]
    return {"type": "record", "name": "Reading", "fields": fields}


def test_check_passes_on_the_repository_schemas(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "check"]) == 0
    out = capsys.readouterr().out
    assert "ok   iot.telemetry.v1-value" in out


def test_check_fails_naming_subject_version_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_catalog(
        tmp_path, "BACKWARD", reading(), reading({"name": "unit", "type": "string"})
    )
    assert main(["schemas", "check", "--schemas", str(root)]) == 1
    err = capsys.readouterr().err
    assert "FAIL readings-value v2 (BACKWARD)" in err
    assert "'unit'" in err
    assert "reader_field_missing_default_value" in err


def test_check_applies_the_subjects_mode(tmp_path: Path) -> None:
    root = write_catalog(tmp_path, "NONE", reading(), reading({"name": "unit", "type": "string"}))
    assert main(["schemas", "check", "--schemas", str(root), "--quiet"]) == 0


def test_check_fails_on_a_schema_that_does_not_parse(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_catalog(
        tmp_path, "BACKWARD", reading({"name": "n", "type": "int", "default": "0"})
    )
    assert main(["schemas", "check", "--schemas", str(root)]) == 1
    err = capsys.readouterr().err
    assert "v1.avsc" in err
    assert "default" in err


def test_show_lists_the_catalog_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "show", "iot.telemetry.v1-value", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    (subject,) = shown["subjects"]
    assert subject["subject"] == "iot.telemetry.v1-value"
    assert [v["version"] for v in subject["versions"]] == [1, 2, 3]
    assert subject["schema"]["name"] == "Telemetry"


def test_push_to_an_unreachable_registry_fails_with_a_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schemas", "push", "--registry", "http://127.0.0.1:9/"]) == 1
    assert "iotctl schemas push:" in capsys.readouterr().err


async def test_an_unreachable_kafka_is_a_retriable_error() -> None:
    registry = EmbeddedSchemaRegistry("127.0.0.1:9", request_timeout_s=2)
    with pytest.raises(RegistryUnavailableError) as caught:
        await registry.start()
    assert caught.value.retriable


def test_settings_pick_the_adapter_and_mask_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOT_REGISTRY_URL", "http://registry:8081")
    monkeypatch.setenv("IOT_REGISTRY_USERNAME", "svc")
    monkeypatch.setenv("IOT_REGISTRY_PASSWORD", "s3cret")
    settings = RegistrySettings()
    assert "s3cret" not in repr(settings)
    remote = settings.open()
    assert isinstance(remote, ConfluentSchemaRegistry)
    assert remote.url == "http://registry:8081"
    assert "s3cret" not in repr(remote)
    embedded = RegistrySettings(url="embedded", topic="_t").open()
    assert isinstance(embedded, EmbeddedSchemaRegistry)
    assert embedded.topic == "_t"


async def test_the_rest_client_sends_basic_auth_and_confluent_headers() -> None:
    seen: dict[str, str] = {}

    async def subjects(request: web.Request) -> web.Response:
        seen.update(request.headers)
        return web.json_response(["b", "a"])

    app = web.Application()
    app.router.add_get("/subjects", subjects)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        client = ConfluentSchemaRegistry(f"http://127.0.0.1:{port}/", auth=("svc", "s3cret"))
        async with client:
            assert await client.subjects() == ("a", "b")
    finally:
        await runner.cleanup()
    assert seen["Authorization"] == "Basic " + base64.b64encode(b"svc:s3cret").decode()
    assert seen["Accept"].startswith("application/vnd.schemaregistry.v1+json")
