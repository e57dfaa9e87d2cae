"""``iotctl policy|devices|tokens|secrets`` without servers: output, JSON and exit codes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from iotctl.main import main
from policy import Authorizer, MqttTopic, load_policy
from policy.mosquitto_acl import MosquittoAcl
from security import SecretStore, SecurityLayout

POLICY = """\
version: 1
principals:
  - {id: gateway, kind: service}
  - {id: dashboard, kind: api_client}
groups:
  devices: {roles: [device]}
roles:
  device:
    rules:
      - id: own-telemetry
        effect: allow
        mqtt: {actions: [publish], topics: ["devices/%u/telemetry"]}
rules:
  - id: gateway-writes
    effect: allow
    principals: [gateway]
    kafka: {resource: topic, names: [iot.telemetry.v1], operations: [WRITE]}
  - id: dashboard-reads
    effect: allow
    principals: [dashboard]
    http: {devices: ["*"]}
"""

Run = tuple[int, str, str]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    monkeypatch.setenv("IOT_LOCAL_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IOT_POLICY_FILE", str(policy))
    monkeypatch.setenv("IOT_SECURE", "false")
    return tmp_path


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_lists_the_new_command_groups(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("policy", "devices", "tokens", "secrets"):
        assert command in out


# -- devices ----------------------------------------------------------------------------


def test_devices_add_list_revoke(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "devices", "add", "dev-1", "--json")
    assert code == 0
    added = json.loads(out)
    assert added["device_id"] == "dev-1"
    assert len(added["password"]) >= 32
    assert added["password"] not in (env / "state" / "security" / "devices.json").read_text()
    assert "secure mode is off" in added["mqtt"]["note"]

    code, out, _ = _run(capsys, "devices", "add", "dev-2")
    assert code == 0
    assert "shown only this once" in out

    code, out, _ = _run(capsys, "devices", "list", "--json")
    assert [d["device_id"] for d in json.loads(out)["devices"]] == ["dev-1", "dev-2"]

    assert _run(capsys, "devices", "revoke", "dev-1")[0] == 0
    code, out, _ = _run(capsys, "devices", "list")
    assert code == 0
    assert "dev-1" not in out
    assert "dev-2" in out


def test_devices_exit_codes(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "devices", "add", "dev-1")[0] == 0
    code, _, err = _run(capsys, "devices", "add", "dev-1")
    assert (code, "already registered" in err) == (1, True)
    code, _, err = _run(capsys, "devices", "revoke", "dev-9")
    assert (code, "not registered" in err) == (1, True)
    for bad in ("a/b", "a+b", "a#b", "a\x00b", "a,b", "a;b"):
        code, _, err = _run(capsys, "devices", "add", bad)
        assert code == 2, bad
        assert "invalid device id" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["devices", "add"])
    assert exit_info.value.code == 2


def test_in_secure_mode_a_device_the_policy_declares_otherwise_is_not_stored(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOT_SECURE", "true")
    code, _, err = _run(capsys, "devices", "add", "gateway")
    assert code == 1
    assert "declares it as service" in err
    assert _run(capsys, "devices", "list", "--json")[1] == '{"devices": []}\n'
    code, out, _ = _run(capsys, "devices", "add", "dev-1", "--json")
    assert code == 0
    assert "`dev up` writes" in json.loads(out)["mqtt"]["note"]  # no server is running


# -- tokens and secrets -----------------------------------------------------------------


def test_tokens_only_for_api_clients(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "tokens", "add", "dashboard", "--json")
    assert code == 0
    issued = json.loads(out)
    assert issued["token"].startswith("iot_")
    code, _, err = _run(capsys, "tokens", "add", "gateway")
    assert (code, "not an api_client" in err) == (1, True)
    code, out, _ = _run(capsys, "tokens", "list")
    assert issued["token_id"] in out
    assert issued["token"] not in out
    assert _run(capsys, "tokens", "revoke", issued["token_id"])[0] == 0
    assert _run(capsys, "tokens", "revoke", issued["token_id"])[0] == 1


def test_secrets_are_masked_unless_shown(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    credential = SecretStore(SecurityLayout.under(env / "state").secrets_file).ensure(["gw"])["gw"]
    code, out, _ = _run(capsys, "secrets", "list")
    assert (code, out) == (0, "gw:********\n")
    code, out, _ = _run(capsys, "secrets", "list", "--json")
    assert credential.password not in out
    assert _run(capsys, "secrets", "show", "gw")[1] == credential.password + "\n"
    assert _run(capsys, "secrets", "show", "nobody")[0] == 1


# -- policy -----------------------------------------------------------------------------


def test_check_the_example_is_clean_and_findings_exit_one(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "policy.example.yaml"
    code, out, _ = _run(capsys, "policy", "check", "--file", str(example))
    assert (code, out.rstrip().endswith("no findings")) == (0, True)
    flawed = env / "flawed.yaml"
    flawed.write_text(
        POLICY + "  - effect: allow\n    principals: [ghost]\n    http: {devices: [x]}\n"
    )
    code, out, _ = _run(capsys, "policy", "check", "--file", str(flawed), "--json")
    assert code == 1
    findings = json.loads(out)["findings"]
    assert ("unknown-principal", 22) in {(f["kind"], f["line"]) for f in findings}


def test_check_judges_the_effective_policy_with_registered_devices(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "policy", "check")
    assert code == 1  # the device role applies to nobody yet
    assert "never-matches" in out
    _run(capsys, "devices", "add", "dev-1")
    assert _run(capsys, "policy", "check")[0] == 0


def test_explain_prints_the_decision_and_the_rule_with_its_line(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, "devices", "add", "dev-1")
    code, out, _ = _run(
        capsys,
        "policy",
        "explain",
        "--principal",
        "dev-1",
        "--action",
        "publish",
        "--resource",
        "mqtt:devices/dev-1/telemetry",
    )
    assert code == 0
    assert out.startswith("ALLOWED")
    assert f"rule 'own-telemetry' (allow, {env / 'policy.yaml'}:10)" in out

    code, out, _ = _run(
        capsys, "policy", "explain", "--principal", "User:gateway", "--action", "READ",
        "--resource", "kafka:topic:iot.telemetry.v1", "--json",
    )  # fmt: skip
    assert code == 1
    answer = json.loads(out)
    assert (answer["allowed"], answer["rule"]) == (False, None)
    assert "default deny" in answer["reason"]

    code, _, err = _run(
        capsys, "policy", "explain", "--principal", "x", "--action", "read", "--resource", "ftp:x"
    )
    assert (code, "cannot parse resource" in err) == (2, True)


ACL = """\
user alice
topic readwrite rooms/alice/#
topic deny rooms/alice/secret
topic read public/#

pattern write devices/%u/telemetry
"""


def test_import_mosquitto_keeps_every_decision(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    acl_file, output = env / "acl", env / "imported.yaml"
    acl_file.write_text(ACL)
    code, _, err = _run(capsys, "policy", "import-mosquitto", str(acl_file), "-o", str(output))
    assert code == 0
    assert "wrote" in err
    authorizer, mosquitto = Authorizer(load_policy(output)), MosquittoAcl.parse(ACL)
    topics = [
        "rooms/alice/x",
        "rooms/alice/secret",
        "rooms/bob/x",
        "public/news",
        "devices/alice/telemetry",
        "devices/bob/telemetry",
    ]
    for user, topic, (access, action) in itertools.product(
        ["alice", "bob"], topics, [("read", "subscribe"), ("write", "publish")]
    ):
        expected = mosquitto.allows(username=user, client_id="c1", topic=topic, access=access)  # type: ignore[arg-type]
        actual = authorizer.authorize(user, action, MqttTopic(topic), client_id="c1").allowed
        assert actual == expected, (user, topic, access)


def test_import_mosquitto_refuses_what_it_cannot_keep(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = env / "bad.acl"
    bad.write_bytes(b"user al\xffice\ntopic read x\n")
    assert _run(capsys, "policy", "import-mosquitto", str(bad))[0] == 1
    bad.write_text("user a/b\ntopic read x\n")
    code, _, err = _run(capsys, "policy", "import-mosquitto", str(bad))
    assert (code, "acl_file line 1" in err) == (1, True)


def test_apply_needs_secure_mode(env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "policy", "apply")
    assert (code, "IOT_SECURE=true" in err) == (1, True)


def test_apply_of_a_malformed_policy_names_the_line_and_writes_nothing(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOT_SECURE", "true")
    (env / "policy.yaml").write_text(
        POLICY.replace(
            "effect: allow\n    principals: [gateway]", "effect: alow\n    principals: [gateway]"
        )
    )
    code, out, err = _run(capsys, "policy", "apply")
    assert code == 1
    assert f"{env / 'policy.yaml'}:15: unknown effect 'alow'" in err
    assert out == ""
    assert not (env / "state" / "security" / "secrets.json").exists()


def test_apply_refuses_a_password_variable_that_is_not_set(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOT_SECURE", "true")
    monkeypatch.delenv("GATEWAY_PASSWORD", raising=False)
    code, _, err = _run(capsys, "policy", "apply", "--password", "gateway=GATEWAY_PASSWORD")
    assert (code, "GATEWAY_PASSWORD (the password of gateway) is not set" in err) == (1, True)
    assert not (env / "state" / "security" / "secrets.json").exists()


def test_apply_takes_passwords_only_as_principal_equals_variable(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["policy", "apply", "--password", "gateway"])
    assert exit_info.value.code == 2
    assert "is not PRINCIPAL=VARIABLE" in capsys.readouterr().err
