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
from tests.faults.schedule import (
    HOST_ACTIONS,
    REQUIRED,
    Action,
    Target,
    Topology,
    kinds_for,
    make_schedule,
    missing_kinds,
)


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
        stop_codes={"gateway-1": 0, "worker": 0},
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


def test_a_process_that_exits_by_itself_or_stops_uncleanly_fails_the_run() -> None:
    """Finding of the cluster issue: the worker exited by itself and only the harness's
    restart kept the run going; that passed."""
    exited = dataclasses.replace(_clean(), exits=[(42.0, "worker", 1)])
    assert _failed(exited) == {"processes_ride_through"}
    assert "worker exited (1) at 42.0s" in _by_name(exited)["processes_ride_through"].examples
    unclean = dataclasses.replace(_clean(), stop_codes={"gateway-1": 0, "worker": -15})
    assert _failed(unclean) == {"processes_ride_through"}
    assert _by_name(_clean())["processes_ride_through"].counts == {
        "exits": 0,
        "unready": 0,
        "unclean_stops": 0,
    }
    relay_stopped = dataclasses.replace(_clean(), unready=["worker-2"])
    assert _failed(relay_stopped) == {"processes_ride_through"}
    verdict = _by_name(relay_stopped)["processes_ride_through"]
    assert "worker-2 not ready after the faults" in verdict.examples


def test_a_fault_not_seen_taking_effect_fails_the_run() -> None:
    """A clock step its gateway never saw proves nothing about clock steps."""
    assert _by_name(_clean())["faults_took_effect"].ok
    unfelt = dataclasses.replace(
        _clean(), unfelt=["gateway-1's clock stepped back: the gateway never saw it go back"]
    )
    assert _failed(unfelt) == {"faults_took_effect"}
    assert _by_name(unfelt)["faults_took_effect"].counts == {"unfelt": 1}


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
    assert verdict.examples[0].startswith("d1 seq 1 after seq 2")


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
    first = make_schedule(42, 170)
    assert first == make_schedule(42, 170)
    assert first != make_schedule(43, 170)
    assert missing_kinds(first) == []
    assert len(first) >= len(kinds_for(REQUIRED, Topology()))
    assert Target.MOSQUITTO not in {f.target for f in first}  # direct mode: no broker
    assert Target.POSTGRES not in {f.target for f in first}  # an SQLite worker
    bridge_topology = Topology(mode="bridge", gateways=1)
    bridge = make_schedule(42, 220, bridge_topology)
    assert missing_kinds(bridge, bridge_topology) == []
    assert Target.MOSQUITTO in {f.target for f in bridge}
    cluster = Topology(brokers=3, workers=2, store="postgres")
    on_postgres = make_schedule(42, 230, cluster)
    assert missing_kinds(on_postgres, cluster) == []
    together = [(a, b) for a, b in itertools.pairwise(on_postgres) if b.overlaps]
    assert {((a.action, a.target), (b.action, b.target)) for a, b in together} == {
        ((Action.KILL, Target.KAFKA_LEADER), (Action.KILL, Target.GATEWAY)),
        ((Action.PAUSE, Target.POSTGRES), (Action.KILL, Target.WORKER)),
    }
    assert all(round(b.at_s - a.at_s, 1) == 1.0 for a, b in together)  # the first holds
    assert all(str(b).startswith("  + ") for _, b in together)
    kinds = {(f.action, f.target) for f in on_postgres}
    assert {(Action.KILL, Target.POSTGRES), (Action.JOIN, Target.WORKER)} <= kinds
    assert {(Action.LONG_PAUSE, Target.WORKER), (Action.LONG_PAUSE, Target.GATEWAY)} <= kinds
    assert (Action.KILL, Target.KAFKA) not in kinds  # the leader and the controller instead
    assert {f.instance for f in on_postgres if f.target is Target.WORKER} <= {0, 1}
    assert all(a.at_s < b.at_s for a, b in itertools.pairwise(first))
    assert first[-1].at_s < 170 - 10
    assert missing_kinds(make_schedule(42, 30)) != []  # too short: the runner refuses it


def test_links_clocks_and_disks_fail_only_on_hosts_of_their_own() -> None:
    cluster = Topology(brokers=3, workers=2, store="postgres")
    hosts = dataclasses.replace(cluster, hosts=True)
    assert not HOST_ACTIONS & {f.action for f in make_schedule(42, 360, cluster)}
    schedule = make_schedule(42, 540, hosts)
    assert missing_kinds(schedule, hosts) == []
    kinds = {(f.action, f.target) for f in schedule}
    assert {
        (Action.CUT_FROM_PEERS, Target.KAFKA_LEADER),
        (Action.CUT_FROM_PEERS, Target.KAFKA_CONTROLLER),
        (Action.CUT_ONE_WAY, Target.KAFKA_LEADER),
        (Action.CUT_FROM_KAFKA, Target.GATEWAY),
        (Action.CUT_FROM_KAFKA, Target.WORKER),
        (Action.CUT_FROM_STORE, Target.WORKER),
        (Action.CUT_FROM_DEVICES, Target.GATEWAY),
        (Action.LOSSY, Target.GATEWAY),
        (Action.SLOW, Target.GATEWAY),
    } <= kinds
    assert {
        (Action.CLOCK_STEP, Target.GATEWAY),
        (Action.DISK_FULL, Target.KAFKA_LEADER),
        (Action.DISK_FULL, Target.POSTGRES),
    } <= kinds
    steps = [f for f in schedule if f.action is Action.CLOCK_STEP]
    assert all(60 <= abs(f.step_s) <= 600 for f in steps)
    step = steps[0]
    back_or_ahead = "back" if step.step_s < 0 else "ahead"
    assert step.label == f"gateway-{step.instance + 1}'s clock stepped {back_or_ahead}"
    assert str(step).endswith(f"{abs(step.step_s):.0f}s for {step.hold_s:.1f}s")
    disk = next(f for f in schedule if f.action is Action.DISK_FULL)
    assert disk.label in ("kafka-leader's disk full", "postgres's disk full")
    cut = next(f for f in schedule if f.action is Action.CUT_FROM_STORE)
    assert cut.label == f"worker-{cut.instance + 1} cut from PostgreSQL"
    assert str(cut).endswith(f"for {cut.hold_s:.1f}s")
    assert all(8 <= f.hold_s <= 14 for f in schedule if f.action in HOST_ACTIONS)
    on_sqlite = Topology(brokers=3, hosts=True)  # no PostgreSQL to be cut from
    assert Action.CUT_FROM_STORE not in {a for a, _ in kinds_for(REQUIRED, on_sqlite)}


def test_without_a_broker_crash_no_loss_is_explained_away() -> None:
    """Direct mode kills no Mosquitto: the crash verdict is absent and nothing is excused."""
    verdicts = check(_clean())
    assert "acked_lost_in_mosquitto_crash" not in {v.name for v in verdicts}
    loss = next(v for v in verdicts if v.name == "no_acked_loss")
    assert "Mosquitto" not in loss.summary


# -- devices as they come: reboots, no seq, no ts ---------------------------------------------


def _fleet() -> History:
    """One device of each awkward kind, all well served: b1 names its boot epoch and reboots;
    r1 reboots without one (``r1:1`` again, with a later ts); n1 sends no seq (its event id
    is a hash of the payload) and publishes one reading twice; x1 sends neither seq nor ts,
    and its reading published twice reached the log as two events (at least once); and one
    reading dated by a glitched clock went to the DLQ."""
    b1, r1, n1 = "b1", "r1", "n1"
    x1_values = (("temp_c", 20.5),)
    acks = [
        Ack(b1, 1, "ok", 0.0, 1.0, boot=1, ts=1000, device_kind="boot"),
        Ack(r1, 1, "ok", 0.0, 1.0, ts=1000, device_kind="restarts"),
        Ack(n1, None, "ok", 0.0, 1.0, ts=1000, sent_id="sha256:n1a", device_kind="no_seq"),
        Ack(n1, None, "duplicate", 0.0, 1.0, ts=1000, sent_id="sha256:n1a"),
        Ack("x1", None, "ok", 0.0, 1.0, values=x1_values, device_kind="bare"),
        Ack("x1", None, "duplicate", 0.0, 1.0, values=x1_values, device_kind="bare"),
        Ack(b1, 2, "ok", 1.0, 2.0, boot=1, ts=1200),
        Ack(r1, 2, "ok", 1.0, 2.0, ts=1200),
        Ack(b1, 3, "implausible_timestamp", 1.0, 2.0, boot=1, ts=4_102_444_800_000),
        Ack(b1, 1, "ok", 2.0, 3.0, boot=2, ts=5000),  # rebooted: a new epoch, seq from 1
        Ack(r1, 1, "ok", 2.0, 3.0, ts=5000),  # rebooted without an epoch: seq 1 again
    ]
    log = [
        Record(0, 0, "b1:1:1", b1, 1, boot=1, ts=1000),
        Record(0, 1, "sha256:n1a", n1, None, ts=1000),
        Record(0, 2, "sha256:n1a", n1, None, ts=1000),  # the same reading again: absorbed
        Record(0, 3, "b1:1:2", b1, 2, boot=1, ts=1200),
        Record(0, 4, "b1:2:1", b1, 1, boot=2, ts=5000),
        Record(1, 0, "r1:1", r1, 1, ts=1000),
        Record(1, 1, "sha256:x1a", "x1", None, values=x1_values),
        Record(1, 2, "sha256:x1b", "x1", None, values=x1_values),  # its copy: a new event
        Record(1, 3, "r1:2", r1, 2, ts=1200),
        Record(1, 4, "r1:1", r1, 1, ts=5000),
    ]
    projections = _projections(
        _device(b1, 3), _device(r1, 3), _device(n1, 1, duplicates=1), _device("x1", 2)
    )
    return History(
        acks=acks,
        log=log,
        dlq_reasons=["implausible_timestamp"],
        projections=projections,
        oracle=projections,
        expected_alerts=["alert-1"],
        published_alerts=["alert-1"],
    )


def _without(history: History, *drop: int, **changes: object) -> History:
    """``history`` without the log records at positions ``drop``."""
    log = [record for n, record in enumerate(history.log) if n not in drop]
    return dataclasses.replace(history, log=log, **changes)


def test_reboots_readings_without_seq_or_ts_and_a_glitched_clock_hold_every_invariant() -> None:
    verdicts = _by_name(_fleet())
    assert {v.status for v in verdicts.values()} == {Status.PASS}
    loss = verdicts["no_acked_loss"].counts
    assert (loss["acked_readings"], loss["in_log"], loss["lost"]) == (8, 8, 0)
    assert loss["acked_readings.bare"] == 1
    once = verdicts["no_event_applied_twice"].counts
    assert once["distinct_events"] == 9  # x1's reading twice, r1:1 for two readings
    assert once["copies_at_least_once"] == 1
    assert once["event_ids_of_several_readings"] == 1
    assert once["redelivered_records"] == 1
    order = verdicts["per_device_order"].counts
    assert (order["readings"], order["restarts_in_order"], order["out_of_order"]) == (8, 2, 0)
    assert verdicts["dlq_accounts_for_rejected"].counts["dlq.implausible_timestamp"] == 1


def test_a_reading_after_a_restart_without_boot_is_lost_though_its_event_id_is_logged() -> None:
    """r1's second ``r1:1`` (a new reading, later ts) never reached Kafka; the first did."""
    history = _without(_fleet(), 9)
    verdicts = _by_name(history)
    assert verdicts["no_acked_loss"].status is Status.FAIL
    assert verdicts["no_acked_loss"].examples == ("r1:1@5000",)
    assert format_verdicts(list(verdicts.values())).splitlines()[-1].startswith("FAILED")


def test_a_true_duplicate_of_a_restarted_sequence_applied_again_is_caught() -> None:
    """A redelivered ``r1:1`` with its original ts is a duplicate, not a restart."""
    fleet = _fleet()
    log = [*fleet.log, Record(1, 5, "r1:1", "r1", 1, ts=5000)]
    twice = _projections(_device("b1", 3), _device("r1", 4), _device("n1", 1, 1), _device("x1", 2))
    verdict = _by_name(dataclasses.replace(fleet, log=log, projections=twice))[
        "no_event_applied_twice"
    ]
    assert verdict.status is Status.FAIL
    assert verdict.examples == ("r1: +1",)


def test_a_reading_without_seq_applied_twice_is_caught() -> None:
    fleet = _fleet()
    twice = _projections(_device("b1", 3), _device("r1", 3), _device("n1", 2), _device("x1", 2))
    verdict = _by_name(dataclasses.replace(fleet, projections=twice))["no_event_applied_twice"]
    assert verdict.status is Status.FAIL
    assert verdict.examples == ("n1: +1",)


def test_copies_of_a_reading_without_seq_or_ts_are_events_but_none_may_be_applied_twice() -> None:
    fleet = _fleet()
    three = _projections(_device("b1", 3), _device("r1", 3), _device("n1", 1, 1), _device("x1", 3))
    verdict = _by_name(dataclasses.replace(fleet, projections=three))["no_event_applied_twice"]
    assert verdict.status is Status.FAIL
    assert verdict.examples == ("x1: +1",)


def test_a_reading_without_seq_or_ts_missing_from_the_log_is_lost() -> None:
    history = _without(_fleet(), 6, 7)
    verdict = _by_name(history)["no_acked_loss"]
    assert verdict.status is Status.FAIL
    assert verdict.counts["lost"] == 1
    assert verdict.examples == ("x1~temp_c=20.5",)


def test_two_readings_with_equal_values_and_no_seq_or_ts_need_two_events() -> None:
    """x1 measured the same value twice: one event in the log leaves one reading lost."""
    fleet = _fleet()
    again = Ack("x1", None, "ok", 2.0, 3.0, values=(("temp_c", 20.5),))
    history = _without(fleet, 7, acks=[*fleet.acks, again])
    assert _by_name(history)["no_acked_loss"].counts["lost"] == 1
    both = _by_name(dataclasses.replace(fleet, acks=[*fleet.acks, again]))
    assert both["no_acked_loss"].status is Status.PASS
    assert both["no_event_applied_twice"].counts["copies_at_least_once"] == 0


@pytest.mark.parametrize(
    ("swap", "example"),
    [
        ((3, 4), "b1 boot 1 seq 2 ts 1200 after boot 2 seq 1 ts 5000"),  # an older epoch
        ((8, 9), "r1 seq 2 ts 1200 after seq 1 ts 5000"),  # behind the restart
        ((0, 3), "b1 boot 1 seq 1 ts 1000 after boot 1 seq 2 ts 1200"),  # within an epoch
    ],
)
def test_a_restart_is_in_order_but_a_reading_logged_behind_a_later_one_is_not(
    swap: tuple[int, int], example: str
) -> None:
    fleet = _fleet()
    log = list(fleet.log)
    first, second = swap
    log[first], log[second] = (
        dataclasses.replace(log[second], offset=log[first].offset),
        dataclasses.replace(log[first], offset=log[second].offset),
    )
    verdict = _by_name(dataclasses.replace(fleet, log=log))["per_device_order"]
    assert verdict.status is Status.FAIL
    assert verdict.counts["out_of_order"] == 1
    assert verdict.examples[0].startswith(example)


def test_a_reading_dated_by_a_glitched_clock_must_reach_the_dlq() -> None:
    verdict = _by_name(dataclasses.replace(_fleet(), dlq_reasons=[]))["dlq_accounts_for_rejected"]
    assert verdict.status is Status.FAIL
    assert verdict.examples == ("implausible_timestamp: 1 missing",)


def test_more_copies_of_a_reading_without_seq_or_ts_than_published_fail_in_direct_mode() -> None:
    """x1 published its reading twice; a third event of it came from no device publish,
    unless a broker between (bridge mode) handed one publish to a gateway twice."""
    fleet = _fleet()
    log = [*fleet.log, Record(1, 5, "sha256:x1c", "x1", None, values=(("temp_c", 20.5),))]
    three = _projections(_device("b1", 3), _device("r1", 3), _device("n1", 1, 1), _device("x1", 3))
    direct = dataclasses.replace(fleet, log=log, projections=three, oracle=three)
    verdict = _by_name(direct)["no_event_applied_twice"]
    assert verdict.status is Status.FAIL
    assert verdict.counts["copies_beyond_publishes"] == 1
    assert verdict.examples == ("x1~temp_c=20.5: 1 more than published",)
    bridge = _by_name(dataclasses.replace(direct, redelivering_broker=True))
    assert bridge["no_event_applied_twice"].status is Status.PASS
    assert bridge["no_event_applied_twice"].counts["copies_at_least_once"] == 2
    resent = [
        dataclasses.replace(ack, publishes=2) if ack.device_id == "x1" and ack.kind == "ok" else ack
        for ack in fleet.acks
    ]
    again = _by_name(dataclasses.replace(direct, acks=resent))["no_event_applied_twice"]
    assert again.status is Status.PASS  # sent again after a lost connection: a third copy
