"""The simulated devices' kinds: what each sends, how it reboots, what it keeps between runs."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from devstack.device_models import (
    GLITCHED_CLOCKS_MS,
    REALISTIC,
    SEQ_LEASE,
    TIDY,
    DeviceKind,
    DeviceMix,
    SimulatedDevice,
    load_counters,
    save_counters,
)
from iot_gateway.ingest import event_id_for

NOW_MS = 1_765_000_000_000


def _device(
    kind: DeviceKind, counters: dict[str, int] | None = None, skew_ms: int = 0
) -> SimulatedDevice:
    return SimulatedDevice(
        "d-1", "devices/d-1/telemetry", kind, skew_ms, counters or {}, random.Random(7)
    )


def test_a_mix_gives_each_kind_its_share_the_same_way_every_time() -> None:
    ids = [f"d-{n:03d}" for n in range(300)]
    fleet = REALISTIC.assign(ids)
    kinds = Counter(kind for kind, _ in fleet.values())
    assert kinds == {
        DeviceKind.SEQ: 201,
        DeviceKind.BOOT: 30,
        DeviceKind.RESTARTS: 30,
        DeviceKind.NO_SEQ: 30,
        DeviceKind.BARE: 9,
    }
    skews = [skew for kind, skew in fleet.values() if skew]
    assert len(skews) == round(0.2 * 291)
    assert all(-120_000 <= skew <= 60_000 for skew in skews)
    assert all(skew == 0 for kind, skew in fleet.values() if kind is DeviceKind.BARE)
    assert fleet == REALISTIC.assign(reversed(ids))
    assert {kind for kind, _ in TIDY.assign(ids).values()} == {DeviceKind.SEQ}


def test_a_mix_refuses_shares_that_do_not_add_up() -> None:
    with pytest.raises(ValueError, match="at most 1"):
        DeviceMix(boot=0.6, no_seq=0.6)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DeviceMix(skewed=1.5)


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (DeviceKind.SEQ, {"seq", "ts"}),
        (DeviceKind.BOOT, {"seq", "boot", "ts"}),
        (DeviceKind.RESTARTS, {"seq", "ts"}),
        (DeviceKind.NO_SEQ, {"ts"}),
        (DeviceKind.BARE, set()),
    ],
)
def test_each_kind_sends_its_fields_and_knows_the_event_id_the_gateway_gives(
    kind: DeviceKind, fields: set[str]
) -> None:
    device = _device(kind, skew_ms=-90_000)
    reading = device.reading(NOW_MS)
    document = json.loads(reading.payload)
    assert set(document) - {"metrics", "attributes"} == fields
    if "ts" in fields:
        assert document["ts"] == NOW_MS - 90_000
    if fields:
        expected = event_id_for(
            "d-1", reading.seq, reading.boot, device.topic, reading.payload, None
        )
        assert reading.event_id == expected
        assert "metrics" not in reading.ledger()
    else:
        assert reading.event_id is None  # the gateway's time joins it
        assert reading.ledger()["metrics"] == document["metrics"]


def test_a_reboot_starts_a_new_sequence_and_only_a_boot_kind_names_it() -> None:
    boot = _device(DeviceKind.BOOT, {"seq": 40, "boot": 3})
    assert (boot.reading(NOW_MS).boot, boot.reading(NOW_MS).seq) == (4, 2)  # a start is a boot
    boot.reboot()
    again = boot.reading(NOW_MS + 1)
    assert again.boot == 5
    assert again.seq in (0, 1)
    restarts = _device(DeviceKind.RESTARTS, {"seq": 40})
    assert restarts.reading(NOW_MS).seq == 41
    restarts.reboot()
    after = restarts.reading(NOW_MS + 1)
    assert (after.boot, after.seq in (0, 1)) == (None, True)


def test_only_rebooting_kinds_plan_a_reboot() -> None:
    for kind in DeviceKind:
        device = _device(kind)
        device.plan_reboot(100.0, (20.0, 90.0))
        assert (120.0 <= device.reboot_at <= 190.0) is kind.reboots


def test_a_glitched_clock_dates_a_reading_far_outside_the_band_and_uses_a_seq() -> None:
    device = _device(DeviceKind.SEQ)
    glitched = device.reading(NOW_MS, glitch=True)
    assert glitched.ts in GLITCHED_CLOCKS_MS
    assert device.reading(NOW_MS).seq == glitched.seq + 1  # the platform sees a gap


def test_counters_are_saved_ahead_while_running_and_exactly_at_a_stop(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"old-device": 7}))  # the former format: a bare seq
    seq, boot = _device(DeviceKind.SEQ, {"seq": 10}), _device(DeviceKind.BOOT, {"boot": 2})
    for device in (seq, boot):
        device.device_id += f"-{device.kind}"
    save_counters(state, [seq, boot], ahead=True)
    ahead = load_counters(state)
    assert ahead["d-1-seq"] == {"seq": 10 + SEQ_LEASE}
    assert ahead["d-1-boot"] == {"seq": 0, "boot": 4}  # started in 3; saved one epoch on
    assert ahead["old-device"] == {"seq": 7}
    save_counters(state, [seq, boot], ahead=False)
    assert load_counters(state)["d-1-boot"] == {"seq": 0, "boot": 3}
    restarted = SimulatedDevice(
        "d-1-boot", "t", DeviceKind.BOOT, 0, ahead["d-1-boot"], random.Random(1)
    )
    assert restarted.reading(NOW_MS).boot == 5  # past every epoch the killed run could use
