"""The JSON shapes of the query API: every time is an RFC 3339 string beside its epoch ms."""

from __future__ import annotations

from collections.abc import Iterator

from streams.domain import TelemetryEvent
from streams.projections.alerts import AlertState
from streams.projections.device import DeviceState, LatestValue
from streams.projections.windows import WindowAggregate, WindowSpec
from streams.query.shapes import (
    alert_json,
    alert_record_json,
    device_json,
    reading_json,
    window_json,
)

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z


def _device() -> DeviceState:
    return DeviceState(
        "dev-1",
        first_seen=T0,
        last_seen=T0 + 61_500,
        count=2,
        first_seq=1,
        last_seq=2,
        seq_floor=None,
        gaps=(),
        missing=0,
        lost=0,
        duplicates=0,
        out_of_window=0,
        invalid_values=0,
        metrics={"temp_c": LatestValue(21.5, T0 + 61_500)},
    )


def _ms_fields(body: object, path: str = "") -> Iterator[tuple[str, dict[str, object]]]:
    """Every ``*_ms`` key in ``body`` (nested too) with the object holding it."""
    if isinstance(body, dict):
        for key, value in body.items():
            if key.endswith("_ms"):
                yield f"{path}{key}", body
            yield from _ms_fields(value, f"{path}{key}.")
    elif isinstance(body, list):
        for item in body:
            yield from _ms_fields(item, path)


def test_a_device_answers_its_times_as_strings_and_milliseconds() -> None:
    body = device_json(_device())
    assert (body["first_seen"], body["first_seen_ms"]) == ("2023-11-14T22:13:20.000Z", T0)
    assert (body["last_seen"], body["last_seen_ms"]) == ("2023-11-14T22:14:21.500Z", T0 + 61_500)
    assert body["metrics"] == {
        "temp_c": {"value": 21.5, "ts": "2023-11-14T22:14:21.500Z", "ts_ms": T0 + 61_500}
    }


def test_a_window_answers_its_start_and_end() -> None:
    window = WindowAggregate("dev-1", "temp_c", 60_000, T0, 2, 1.0, 3.0, 4.0)
    body = window_json(window, WindowSpec("1m", 60_000, 0), watermark=T0 + 120_000)
    assert (body["start"], body["start_ms"]) == ("2023-11-14T22:13:20.000Z", T0)
    assert (body["end"], body["end_ms"]) == ("2023-11-14T22:14:20.000Z", T0 + 60_000)
    assert (body["mean"], body["closed"]) == (2.0, True)


def test_an_alert_state_answers_since() -> None:
    body = alert_json(AlertState("dev-1", "temperature-high", True, T0, 40.0, "dev-1:7"))
    assert (body["since"], body["since_ms"]) == ("2023-11-14T22:13:20.000Z", T0)


def test_an_alert_record_keeps_its_fields_and_gets_its_time() -> None:
    record = {"event_id": "e", "state": "RAISED", "window_ms": 60_000, "ts": T0}
    assert alert_record_json(record) == {
        "event_id": "e",
        "state": "RAISED",
        "window_ms": 60_000,  # a duration, not a time: no twin
        "ts": "2023-11-14T22:13:20.000Z",
        "ts_ms": T0,
    }


def test_a_reading_answers_its_event_time() -> None:
    event = TelemetryEvent("dev-1:1", "dev-1", T0, T0 + 5, 1, {"temp_c": 21.5})
    body = reading_json(event)
    assert (body["ts"], body["ts_ms"]) == ("2023-11-14T22:13:20.000Z", T0)
    assert "received_at" not in body


def test_every_millisecond_time_of_every_shape_has_its_string_twin() -> None:
    window = WindowAggregate("dev-1", "temp_c", 60_000, T0, 1, 1.0, 1.0, 1.0)
    bodies = [
        device_json(_device()),
        window_json(window, WindowSpec("1m", 60_000, 0), watermark=T0),
        alert_json(AlertState("dev-1", "r", False, T0, 1.0, "c")),
        reading_json(TelemetryEvent("dev-1:1", "dev-1", T0, T0, 1, {})),
    ]
    found = [(where, holder) for body in bodies for where, holder in _ms_fields(body)]
    assert len(found) == 7
    for where, holder in found:
        name = where.rsplit(".", 1)[-1].removesuffix("_ms")
        assert isinstance(holder[name], str), where
