"""The gateway's per-message decision: every bad input is a Rejected with its reason."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.avro import SchemaCatalog, decode
from iot_gateway.codecs import SubjectCodec
from iot_gateway.config import LimitSettings, RouteSettings
from iot_gateway.ingest import (
    REASONS,
    Accepted,
    Ingest,
    Rejected,
    Throttled,
    event_id_for,
)
from iot_gateway.ratelimit import DeviceRateLimiter
from tests.fakes import InMemorySchemas

SUBJECT = "iot.telemetry.v1-value"
ROUTES = (
    RouteSettings(
        name="telemetry",
        filter="devices/+/telemetry",
        kafka_topic="iot.telemetry.v1",
        subject=SUBJECT,
    ),
    RouteSettings(
        name="telemetry-avro",
        filter="devices/+/telemetry/avro",
        kafka_topic="iot.telemetry.v1",
        subject=SUBJECT,
        payload_format="avro",
    ),
)
NOW = 1_767_225_600_000


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def schemas() -> InMemorySchemas:
    return InMemorySchemas()


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def ingest(schemas: InMemorySchemas, clock: _Clock) -> Ingest:
    registered = schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    limits = LimitSettings(max_payload_bytes=512, device_rate_per_s=10, device_burst=5)
    limiter = DeviceRateLimiter(limits.device_rate_per_s, limits.device_burst, clock)
    return Ingest(ROUTES, {SUBJECT: SubjectCodec(registered)}, limits, limiter)


def _json(document: Any) -> bytes:
    return json.dumps(document).encode()


def test_a_valid_reading_becomes_a_framed_avro_record_keyed_by_device(
    ingest: Ingest, schemas: InMemorySchemas
) -> None:
    payload = _json({"seq": 7, "ts": NOW - 5, "metrics": {"temp_c": 21.5}})
    result = ingest.process("devices/dev-1/telemetry", payload, NOW)
    assert isinstance(result, Accepted)
    assert (result.kafka_topic, result.key, result.event_id) == (
        "iot.telemetry.v1",
        b"dev-1",
        "dev-1:7",
    )
    assert dict(result.headers)["event_id"] == b"dev-1:7"
    assert dict(result.headers)["mqtt_topic"] == b"devices/dev-1/telemetry"
    record = decode(result.value, schemas)
    assert record == {
        "event_id": "dev-1:7",
        "device_id": "dev-1",
        "ts": NOW - 5,
        "received_at": NOW,
        "seq": 7,
        "boot": None,
        "metrics": {"temp_c": 21.5},
        "attributes": {},
        "ts_stamped": False,
    }


def test_a_boot_epoch_is_part_of_the_event_id(ingest: Ingest, schemas: InMemorySchemas) -> None:
    before = ingest.process(
        "devices/dev-1/telemetry", _json({"seq": 0, "boot": 4, "metrics": {}}), NOW
    )
    after = ingest.process(
        "devices/dev-1/telemetry", _json({"seq": 0, "boot": 5, "metrics": {}}), NOW
    )
    assert isinstance(before, Accepted)
    assert isinstance(after, Accepted)
    assert (before.event_id, after.event_id) == ("dev-1:4:0", "dev-1:5:0")
    assert decode(after.value, schemas)["boot"] == 5


def test_without_seq_a_device_timestamped_reading_redelivered_keeps_its_id(
    ingest: Ingest, schemas: InMemorySchemas
) -> None:
    payload = _json({"ts": NOW - 10, "metrics": {"rpm": 1200}})
    first = ingest.process("devices/dev-2/telemetry", payload, NOW)
    again = ingest.process("devices/dev-2/telemetry", payload, NOW + 1000)
    assert isinstance(first, Accepted)
    assert isinstance(again, Accepted)
    assert first.event_id == again.event_id
    assert first.event_id == event_id_for(
        "dev-2", None, None, "devices/dev-2/telemetry", payload, None
    )
    assert decode(first.value, schemas)["ts_stamped"] is False


def test_two_genuine_equal_readings_without_seq_or_ts_are_two_events(
    ingest: Ingest, schemas: InMemorySchemas
) -> None:
    """Finding 2: their ids hashed only topic and payload, so the second one was dropped."""
    payload = _json({"metrics": {"rpm": 1200}})
    first = ingest.process("devices/dev-2/telemetry", payload, NOW)
    second = ingest.process("devices/dev-2/telemetry", payload, NOW + 1000)
    assert isinstance(first, Accepted)
    assert isinstance(second, Accepted)
    assert first.event_id != second.event_id
    record = decode(first.value, schemas)
    assert (record["ts"], record["ts_stamped"]) == (NOW, True)


@pytest.mark.parametrize(
    ("ts", "accepted"),
    [
        (4_102_444_800_000, False),  # 2100-01-01
        (NOW + 301_000, False),
        (NOW + 299_000, True),
        (NOW - 29 * 86_400_000, True),
        (NOW - 31 * 86_400_000, False),
        (0, False),
    ],
)
def test_event_time_outside_the_band_around_receipt_is_implausible(
    ingest: Ingest, ts: int, accepted: bool
) -> None:
    """Finding 3: one reading dated 2100 held a device's latest values for good."""
    result = ingest.process(
        "devices/dev-1/telemetry", _json({"ts": ts, "seq": 1, "metrics": {}}), NOW
    )
    if accepted:
        assert isinstance(result, Accepted)
    else:
        assert isinstance(result, Rejected)
        assert result.reason == "implausible_timestamp"
        assert str(ts) in result.detail


def test_a_payload_cannot_claim_its_time_was_stamped(ingest: Ingest) -> None:
    result = ingest.process("devices/dev-1/telemetry", _json({"ts_stamped": True}), NOW)
    assert isinstance(result, Rejected)
    assert (result.reason, result.detail) == ("schema_mismatch", "ts_stamped is set by the gateway")


def test_avro_passthrough_is_validated_and_restamped(
    ingest: Ingest, schemas: InMemorySchemas
) -> None:
    codec = SubjectCodec(schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT)))
    framed = codec.encode(
        {
            "event_id": "ignored",
            "device_id": "dev-3",
            "ts": NOW,
            "received_at": 0,
            "seq": 3,
            "metrics": {"v": 1.0},
            "attributes": {},
        }
    )
    result = ingest.process("devices/dev-3/telemetry/avro", framed[5:], NOW)
    assert isinstance(result, Accepted)
    record = decode(result.value, schemas)
    assert (record["event_id"], record["received_at"]) == ("dev-3:3", NOW)


@pytest.mark.parametrize(
    ("topic", "payload", "reason", "detail"),
    [
        ("sensors/dev-1/telemetry", b"{}", "unknown_route", "no route"),
        ("devices/dev-1/telemetry" + "/x" * 200, b"{}", "invalid_topic", "levels"),
        ("devices/dev-1/telemetry/extra", b"{}", "unknown_route", "no route"),
        ("devices//telemetry", b'{"metrics": {}}', "invalid_device_id", "empty"),
        ("devices/d\x01v/telemetry", b'{"metrics": {}}', "invalid_device_id", "control"),
        ("devices/" + "d" * 129 + "/telemetry", b"{}", "invalid_device_id", "at most 128"),
        ("devices/d v/telemetry", b"{}", "invalid_device_id", "whitespace"),
        ("devices/d:v/telemetry", b"{}", "invalid_device_id", "':'"),
        ("devices/dev-1/telemetry", b"x" * 513, "payload_too_large", "513 bytes"),
        ("devices/dev-1/telemetry", b'{"metrics": {"t": 1}, "x": "\xff"}', "invalid_utf8", "UTF-8"),
        ("devices/dev-1/telemetry", b'{"metrics": ', "invalid_json", "Expecting value"),
        ("devices/dev-1/telemetry", b'{"metrics": {"t": NaN}}', "invalid_json", "NaN"),
        ("devices/dev-1/telemetry", b"[1, 2]", "not_an_object", "list"),
        ("devices/dev-1/telemetry", b'{"metrics": {"t": "hot"}}', "schema_mismatch", "metrics.t"),
        ("devices/dev-1/telemetry", b'{"metrics": {"t": true}}', "schema_mismatch", "metrics.t"),
        ("devices/dev-1/telemetry", b'{"temp": 1}', "schema_mismatch", "unknown field"),
        ("devices/dev-1/telemetry", b'{"seq": -1, "metrics": {}}', "schema_mismatch", "seq"),
        ("devices/dev-1/telemetry", b'{"seq": 1.5, "metrics": {}}', "schema_mismatch", "seq"),
        ("devices/dev-1/telemetry", b'{"seq": 1}', "schema_mismatch", "metrics"),
        (
            "devices/dev-1/telemetry",
            b'{"event_id": "x", "metrics": {}}',
            "schema_mismatch",
            "event_id",
        ),
        (
            "devices/dev-1/telemetry",
            b'{"device_id": "dev-2", "metrics": {}}',
            "device_mismatch",
            "dev-2",
        ),
        ("devices/dev-1/telemetry/avro", b"\x02\x04", "invalid_avro", ""),
    ],
)
def test_each_bad_input_class_is_rejected_with_its_reason(
    ingest: Ingest, topic: str, payload: bytes, reason: str, detail: str
) -> None:
    result = ingest.process(topic, payload, NOW)
    assert isinstance(result, Rejected), result
    assert result.reason == reason
    assert result.reason in REASONS
    assert detail in result.detail
    headers = dict(result.headers(topic, NOW))
    assert headers["reason"] == reason.encode()
    assert headers["mqtt_topic"] == topic.encode()


def test_a_flooding_device_is_held_back_without_starving_others(
    ingest: Ingest, clock: _Clock
) -> None:
    payload = _json({"metrics": {"t": 1}})
    outcomes = [ingest.process("devices/flood/telemetry", payload, NOW) for _ in range(8)]
    assert [isinstance(o, Accepted) for o in outcomes] == [True] * 5 + [False] * 3
    held = [o for o in outcomes if not isinstance(o, Accepted)]
    assert all(isinstance(o, Throttled) and 0 < o.wait_s <= 0.1 for o in held)  # 10 msg/s
    assert isinstance(ingest.process("devices/calm/telemetry", payload, NOW), Accepted)
    clock.now += held[0].wait_s  # the wait it asked for refills one token
    assert isinstance(ingest.process("devices/flood/telemetry", payload, NOW), Accepted)


def test_with_over_rate_drop_the_excess_is_dead_lettered(
    schemas: InMemorySchemas, clock: _Clock
) -> None:
    registered = schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    limits = LimitSettings(device_rate_per_s=10, device_burst=5, over_rate="drop")
    limiter = DeviceRateLimiter(limits.device_rate_per_s, limits.device_burst, clock)
    ingest = Ingest(ROUTES, {SUBJECT: SubjectCodec(registered)}, limits, limiter)
    payload = _json({"metrics": {"t": 1}})
    outcomes = [ingest.process("devices/flood/telemetry", payload, NOW) for _ in range(8)]
    assert [o.reason for o in outcomes if isinstance(o, Rejected)] == ["rate_limited"] * 3
    assert limiter.rejected == {"flood": 3}


@given(
    st.binary(max_size=300), st.sampled_from(["devices/d/telemetry", "devices/d/telemetry/avro"])
)
def test_no_payload_makes_ingest_raise(payload: bytes, topic: str) -> None:
    schemas = InMemorySchemas()
    registered = schemas.register(SUBJECT, SchemaCatalog.load().latest(SUBJECT))
    limits = LimitSettings()
    limiter = DeviceRateLimiter(1e9, 1e9, lambda: 0.0)
    ingest = Ingest(ROUTES, {SUBJECT: SubjectCodec(registered)}, limits, limiter)
    result = ingest.process(topic, payload, NOW)
    assert isinstance(result, Accepted | Rejected)
    if isinstance(result, Rejected):
        assert result.reason in REASONS


def test_routes_need_a_device_level(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no '\\+' level"):
        RouteSettings(name="r", filter="devices/all", kafka_topic="t", subject="s")
