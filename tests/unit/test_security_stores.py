"""The security state files: secrets, devices and tokens (no services needed)."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest

from policy import verify_password
from security import (
    Credential,
    DeviceError,
    DeviceStore,
    InvalidIdError,
    SecretStore,
    SecurityLayout,
    StoreError,
    TokenError,
    TokenStore,
)

BAD_IDS = [
    "",
    "*",
    "a/b",
    "a+b",
    "a#b",
    "a,b",
    "a;b",
    "a:b",
    "a\x00b",
    "a b",
    "bad\udcff",  # invalid UTF-8 (a lone surrogate from surrogateescape)
    "x" * 256,
]


@pytest.fixture
def layout(tmp_path: Path) -> SecurityLayout:
    return SecurityLayout.under(tmp_path / "state")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- secrets ----------------------------------------------------------------------------


def test_secrets_are_generated_once_private_and_stable(layout: SecurityLayout) -> None:
    store = SecretStore(layout.secrets_file)
    first = store.ensure(["gateway", "admin"])
    assert set(first) == {"admin", "gateway"}
    assert first["gateway"].password != first["admin"].password
    assert verify_password(first["gateway"].password, first["gateway"].mosquitto_hash)
    assert store.ensure(["gateway"])["gateway"] == first["gateway"]
    assert SecretStore(layout.secrets_file).all() == first
    assert _mode(layout.secrets_file) == 0o600
    assert _mode(layout.root) == 0o700


def test_a_given_password_replaces_the_generated_one_and_keeps_a_matching_hash(
    layout: SecurityLayout,
) -> None:
    store = SecretStore(layout.secrets_file)
    generated = store.ensure(["gateway", "streams"])
    assert store.put("gateway", "from-the-deployment") is True
    assert store.put("gateway", "from-the-deployment") is False  # unchanged: nothing written
    stored = SecretStore(layout.secrets_file).all()
    assert stored["gateway"].password == "from-the-deployment"
    assert verify_password("from-the-deployment", stored["gateway"].mosquitto_hash)
    assert stored["streams"] == generated["streams"]
    assert store.ensure(["gateway"])["gateway"].password == "from-the-deployment"
    with pytest.raises(StoreError, match="empty"):
        store.put("streams", "")


def test_a_dry_run_writes_nothing_and_commit_saves_exactly_what_was_previewed(
    layout: SecurityLayout,
) -> None:
    store = SecretStore(layout.secrets_file)
    preview = store.ensure(["streams"], dry_run=True)
    assert not layout.secrets_file.exists()
    assert store.commit(preview) == ("streams",)
    assert store.get("streams") == preview["streams"]
    assert store.commit(preview) == ()


def test_commit_refuses_a_password_changed_meanwhile(layout: SecurityLayout) -> None:
    store = SecretStore(layout.secrets_file)
    stale = store.ensure(["gateway"], dry_run=True)
    store.ensure(["gateway"])
    with pytest.raises(StoreError, match="changed while"):
        store.commit(stale)


def test_credentials_never_print_their_secrets(layout: SecurityLayout) -> None:
    credential = SecretStore(layout.secrets_file).ensure(["gateway"])["gateway"]
    for text in (repr(credential), str(credential), f"{credential}"):
        assert credential.password not in text
        assert credential.mosquitto_hash not in text
    assert str(credential) == "gateway:********"


@pytest.mark.parametrize("bad", BAD_IDS)
def test_secrets_refuse_ids_the_policy_refuses(layout: SecurityLayout, bad: str) -> None:
    with pytest.raises(InvalidIdError):
        SecretStore(layout.secrets_file).ensure(["fine", bad])
    assert not layout.secrets_file.exists()


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"version": 2}',
        '{"version": 1, "principals": {"x": {"password": "a", "mosquitto_hash": "b"}}}',
    ],
)
def test_a_damaged_secrets_file_is_an_error_not_a_crash(
    layout: SecurityLayout, content: str
) -> None:
    layout.root.mkdir(parents=True)
    layout.secrets_file.write_text(content)
    with pytest.raises(StoreError):
        SecretStore(layout.secrets_file).all()


def test_a_tampered_password_is_detected(layout: SecurityLayout) -> None:
    store = SecretStore(layout.secrets_file)
    store.ensure(["gateway"])
    data = json.loads(layout.secrets_file.read_text())
    data["principals"]["gateway"]["password"] = "changed"
    layout.secrets_file.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="damaged entry 'gateway'"):
        store.get("gateway")


# -- devices ----------------------------------------------------------------------------


def test_a_device_password_is_shown_once_and_stored_only_as_a_hash(
    layout: SecurityLayout,
) -> None:
    store = DeviceStore(layout.devices_file)
    issued = store.add("dev-1")
    assert len(issued.password) >= 32
    assert issued.password not in repr(issued)
    assert issued.password not in layout.devices_file.read_text()
    assert store.hashes()["dev-1"].startswith("$7$")
    assert store.verify("dev-1", issued.password)
    assert not store.verify("dev-1", issued.password + "x")
    assert not store.verify("dev-2", issued.password)
    assert _mode(layout.devices_file) == 0o600


def test_devices_are_listed_sorted_and_revoked(layout: SecurityLayout) -> None:
    store = DeviceStore(layout.devices_file)
    for device_id in ("b", "a", "c"):
        store.add(device_id)
    assert [d.device_id for d in store.list()] == ["a", "b", "c"]
    assert store.revoke("b").device_id == "b"
    assert [d.device_id for d in store.list()] == ["a", "c"]
    assert "b" not in store.hashes()


def test_adding_twice_or_revoking_an_unknown_device_fails(layout: SecurityLayout) -> None:
    store = DeviceStore(layout.devices_file)
    first = store.add("dev-1")
    with pytest.raises(DeviceError, match="already registered"):
        store.add("dev-1")
    assert store.verify("dev-1", first.password)  # the old password still works
    with pytest.raises(DeviceError, match="not registered"):
        store.revoke("dev-2")


@pytest.mark.parametrize("bad", BAD_IDS)
def test_device_ids_are_validated_like_policy_principals(layout: SecurityLayout, bad: str) -> None:
    store = DeviceStore(layout.devices_file)
    with pytest.raises(InvalidIdError):
        store.add(bad)
    with pytest.raises(InvalidIdError):
        store.revoke(bad)
    assert store.list() == ()


def test_concurrent_adds_lose_nothing(layout: SecurityLayout) -> None:
    store = DeviceStore(layout.devices_file)
    threads = [threading.Thread(target=store.add, args=(f"dev-{i}",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(DeviceStore(layout.devices_file).list()) == 20


# -- tokens -----------------------------------------------------------------------------


def test_tokens_map_to_principals_and_are_stored_as_digests(layout: SecurityLayout) -> None:
    store = TokenStore(layout.tokens_file)
    issued = store.add("dashboard")
    assert issued.token.startswith("iot_")
    assert issued.token not in repr(issued)
    assert issued.token not in layout.tokens_file.read_text()
    assert store.principal_for(issued.token) == "dashboard"
    assert store.principal_for(issued.token + "x") is None
    assert store.principal_for("Bearer " + issued.token) is None
    assert [info.token_id for info in store.list()] == [issued.info.token_id]
    assert _mode(layout.tokens_file) == 0o600


def test_a_running_reader_sees_tokens_added_and_revoked_by_another_process(
    layout: SecurityLayout,
) -> None:
    server_side, cli_side = TokenStore(layout.tokens_file), TokenStore(layout.tokens_file)
    assert server_side.principal_for("iot_nothing") is None
    first = cli_side.add("dashboard")
    second = cli_side.add("dashboard")
    assert server_side.principal_for(first.token) == "dashboard"
    cli_side.revoke(first.info.token_id)
    assert server_side.principal_for(first.token) is None
    assert server_side.principal_for(second.token) == "dashboard"
    assert len(cli_side.revoke("dashboard")) == 1
    assert server_side.principal_for(second.token) is None


def test_revoking_what_does_not_exist_fails(layout: SecurityLayout) -> None:
    with pytest.raises(TokenError):
        TokenStore(layout.tokens_file).revoke("tok_00000000")


def test_credential_equality_includes_the_password() -> None:
    assert Credential("a", "p", "h") != Credential("a", "q", "h")
