"""The fault suite's checker on hand-built histories: a clean one passes, and each broken one
is caught by exactly the invariant it breaks. No services needed."""

from __future__ import annotations

import dataclasses
import itertools
import json

import pytest

from streams.projections import AlertState, DeviceState, WindowAggregate
from tests.faults.checker import (
    Ack,
    BrokerCrash,
    History,
    Projections,
    Record,
    Status,
    Verdict,
    check,
    format_verdicts,
    verdicts_json,
)
from tests.faults.schedule import REQUIRED, Target, kinds_for, make_schedule, missing_kinds


def _device(device_id: str, count: int, duplicates: int = 0) -> DeviceState:
    return DeviceState(device_id, 0, 0, count, 1, count, 1, (), 0, 0, duplicates, 0, 0)


def _projections(*devices: DeviceState) -> Projections:
    return Projections(
        devices=list(devices),
        windows=[WindowAggregate("d1", "temp_c", 60_000, 0, 2, 20.0, 25.0, 45.0)],
        alerts=[AlertState("d1", "warm", True, 1, 25.0, "d1:2")],
    )


def _clean() -> History:
    """Two devices, one redelivery, one bad payload in the DLQ, one alert: all is well."""
    acks = [
        Ack("d1", 1, "ok", 0.0, 1.0),
        Ack("d1", 2, "ok", 1.0, 2.0),
        Ack("d1", 2, "duplicate", 1.0, 2.0),
        Ack("d2", 1, "ok", 0.0, 1.0),
        Ack("d2", None, "invalid_json", 2.0, 3.0),
    ]
    log = [
        Record(0, 0, "d1:1", "d1", 1),
        Record(0, 1, "d1:2", "d1", 2),
        Record(0, 2, "d1:2", "d1", 2),  # redelivered after a gateway crash
        Record(1, 0, "d2:1", "d2", 1),
    ]
    projections = _projections(_device("d1", 2, duplicates=1), _device("d2", 1))
    return History(
        acks=acks,
        log=log,
        dlq_reasons=["invalid_json"],
        projections=projections,
        oracle=projections,
        expected_alerts=["alert-1"],
        published_alerts=["alert-1", "alert-1"],  # at least once: a relay redelivery
    )


def _by_name(history: History) -> dict[str, Verdict]:
    return {verdict.name: verdict for verdict in check(history)}


def _failed(history: History) -> set[str]:
    return {name for name, verdict in _by_name(history).items() if not verdict.ok}


def test_a_clean_history_passes_every_invariant() -> None:
    verdicts = _by_name(_clean())
    assert {v.status for v in verdicts.values()} == {Status.PASS}
    assert verdicts["no_acked_loss"].counts["acked_readings"] == 3
    assert verdicts["no_event_applied_twice"].counts["redelivered_records"] == 1
    assert verdicts["alerts_exactly_once_after_dedupe"].counts["redelivered"] == 1
    assert verdicts["dlq_accounts_for_rejected"].counts["dlq.invalid_json"] == 1


def test_an_acknowledged_reading_missing_from_the_log_is_lost() -> None:
    history = dataclasses.replace(_clean(), log=_clean().log[:-1])  # d2:1 never reached Kafka
    verdicts = _by_name(history)
    assert _failed(history) >= {"no_acked_loss"}
    assert verdicts["no_acked_loss"].counts["lost"] == 1
    assert verdicts["no_acked_loss"].examples == ("d2:1",)


def test_a_loss_inside_a_mosquitto_crash_window_is_the_documented_limit() -> None:
    crash = BrokerCrash(saved_at=0.5, killed_at=1.5)  # d2:1 was acked in (0, 1]
    history = dataclasses.replace(
        _clean(),
        log=_clean().log[:-1],
        crashes=[crash],
        projections=_projections(_device("d1", 2, 1)),
        oracle=_projections(_device("d1", 2, 1)),
    )
    verdicts = _by_name(history)
    assert verdicts["no_acked_loss"].status is Status.PASS
    assert verdicts["no_acked_loss"].counts["lost_in_broker_crash"] == 1
    limit = verdicts["acked_lost_in_mosquitto_crash"]
    assert limit.status is Status.LIMIT
    assert limit.ok
    assert limit.counts["lost"] == 1
    assert limit.examples == ("d2:1",)
    summary = format_verdicts(list(verdicts.values())).splitlines()[-1]
    assert "all invariants hold" not in summary
    assert summary.startswith("DATA LOST within the documented limit of bridge mode")


def test_a_puback_that_arrived_just_after_the_kill_was_sent_by_the_broker_that_died() -> None:
    lost = dataclasses.replace(
        _clean(),
        log=_clean().log[:-1],  # d2:1, acked in (0, 1]
        projections=_projections(_device("d1", 2, 1)),
        oracle=_projections(_device("d1", 2, 1)),
    )
    in_transit = BrokerCrash(saved_at=-1.0, killed_at=-0.2, restarted_at=2.0)
    verdicts = _by_name(dataclasses.replace(lost, crashes=[in_transit]))
    assert verdicts["no_acked_loss"].status is Status.PASS
    assert verdicts["acked_lost_in_mosquitto_crash"].counts["lost_unsaved"] == 1
    too_late = BrokerCrash(saved_at=-3.0, killed_at=-2.0, restarted_at=2.0)  # 2 s on: no
    assert "no_acked_loss" in _failed(dataclasses.replace(lost, crashes=[too_late]))


def test_a_loss_before_a_gateway_subscribed_again_is_counted_apart() -> None:
    crash = BrokerCrash(saved_at=-2.0, killed_at=-1.0, restarted_at=0.5, resubscribed_at=0.9)
    history = dataclasses.replace(
        _clean(),
        log=_clean().log[:-1],
        crashes=[crash],
        projections=_projections(_device("d1", 2, 1)),
        oracle=_projections(_device("d1", 2, 1)),
    )
    limit = _by_name(history)["acked_lost_in_mosquitto_crash"]
    assert limit.status is Status.LIMIT
    assert limit.counts["lost_no_subscriber"] == 1
    assert limit.counts["lost_unsaved"] == 0


def test_a_loss_outside_every_crash_window_still_fails() -> None:
    crash = BrokerCrash(saved_at=5.0, killed_at=6.0)  # long after d2:1 was acked
    history = dataclasses.replace(_clean(), log=_clean().log[:-1], crashes=[crash])
    assert "no_acked_loss" in _failed(history)


def test_an_event_applied_twice_is_caught() -> None:
    twice = _projections(_device("d1", 3, duplicates=0), _device("d2", 1))
    history = dataclasses.replace(_clean(), projections=twice)
    verdict = _by_name(history)["no_event_applied_twice"]
    assert verdict.status is Status.FAIL
    assert verdict.counts["applied_twice"] == 1
    assert verdict.examples == ("d1: +1",)


def test_a_new_reading_behind_a_later_one_breaks_per_device_order() -> None:
    log = [
        Record(0, 0, "d1:2", "d1", 2),
        Record(0, 1, "d1:1", "d1", 1),  # seq 1 first appears after seq 2
        Record(1, 0, "d2:1", "d2", 1),
    ]
    history = dataclasses.replace(_clean(), log=log, faults=[(1.5, "kill -9 gateway-1")])
    verdict = _by_name(history)["per_device_order"]
    assert verdict.status is Status.FAIL
    assert verdict.counts["out_of_order"] == 1
    assert verdict.counts["out_of_order_near.kill -9 gateway-1"] == 1
    assert verdict.examples[0].startswith("d1 seq 1 after 2")


def test_a_device_in_two_partitions_breaks_per_device_order() -> None:
    log = [*_clean().log, Record(1, 1, "d1:3", "d1", 3)]
    verdict = _by_name(dataclasses.replace(_clean(), log=log))["per_device_order"]
    assert verdict.status is Status.FAIL
    assert verdict.counts["devices_in_several_partitions"] == 1


def test_projections_that_differ_from_the_oracle_are_named() -> None:
    expected = _clean().oracle
    actual = dataclasses.replace(
        expected,
        windows=[WindowAggregate("d1", "temp_c", 60_000, 0, 2, 20.0, 26.0, 46.0)],
        alerts=[],
    )
    verdict = _by_name(dataclasses.replace(_clean(), projections=actual))[
        "projections_equal_oracle"
    ]
    assert verdict.status is Status.FAIL
    assert verdict.counts["windows_differ"] == 1
    assert verdict.counts["alert_states_differ"] == 1
    assert verdict.counts["devices_differ"] == 0


@pytest.mark.parametrize(
    ("published", "counter"),
    [([], "missing"), (["alert-1", "alert-2"], "unexpected")],
)
def test_a_missing_or_underived_alert_is_caught(published: list[str], counter: str) -> None:
    verdict = _by_name(dataclasses.replace(_clean(), published_alerts=published))[
        "alerts_exactly_once_after_dedupe"
    ]
    assert verdict.status is Status.FAIL
    assert verdict.counts[counter] == 1


@pytest.mark.parametrize(
    ("reasons", "counter"),
    [([], "missing"), (["invalid_json", "rate_limited"], "unexpected_reason_records")],
)
def test_the_dlq_must_account_for_every_rejected_input(reasons: list[str], counter: str) -> None:
    verdict = _by_name(dataclasses.replace(_clean(), dlq_reasons=reasons))[
        "dlq_accounts_for_rejected"
    ]
    assert verdict.status is Status.FAIL
    assert verdict.counts[counter] == 1


def test_a_dlq_shortfall_inside_a_crash_window_is_explained() -> None:
    history = dataclasses.replace(
        _clean(), dlq_reasons=[], crashes=[BrokerCrash(saved_at=2.5, killed_at=3.5)]
    )
    verdict = _by_name(history)["dlq_accounts_for_rejected"]
    assert verdict.ok
    assert verdict.counts["missing_in_broker_crash"] == 1


def test_verdicts_print_and_serialize() -> None:
    history = dataclasses.replace(_clean(), log=_clean().log[:-1])
    verdicts = check(history)
    text = format_verdicts(verdicts)
    assert "FAIL  no_acked_loss" in text
    assert text.endswith("FAILED: no_acked_loss, no_event_applied_twice")  # d2 applied, not logged
    document = json.loads(verdicts_json(verdicts, seed=7))
    assert document["ok"] is False
    assert document["seed"] == 7
    assert {v["name"] for v in document["verdicts"]} == {v.name for v in verdicts}


def test_a_schedule_is_a_function_of_its_seed_and_holds_every_kind_of_fault() -> None:
    first = make_schedule(42, 130)
    assert first == make_schedule(42, 130)
    assert first != make_schedule(43, 130)
    assert missing_kinds(first) == []
    assert len(first) >= len(kinds_for("direct", REQUIRED))
    assert Target.MOSQUITTO not in {f.target for f in first}  # direct mode: no broker
    bridge = make_schedule(42, 160, mode="bridge", gateways=1)
    assert missing_kinds(bridge, "bridge") == []
    assert Target.MOSQUITTO in {f.target for f in bridge}
    assert all(a.at_s < b.at_s for a, b in itertools.pairwise(first))
    assert first[-1].at_s < 130 - 10
    assert missing_kinds(make_schedule(42, 30)) != []  # too short: the runner refuses it


def test_without_a_broker_crash_no_loss_is_explained_away() -> None:
    """Direct mode kills no Mosquitto: the crash verdict is absent and nothing is excused."""
    verdicts = check(_clean())
    assert "acked_lost_in_mosquitto_crash" not in {v.name for v in verdicts}
    loss = next(v for v in verdicts if v.name == "no_acked_loss")
    assert "Mosquitto" not in loss.summary
