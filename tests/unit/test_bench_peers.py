"""The peers benchmark's shared work and its oracle check: a peer that does less is caught."""

from __future__ import annotations

from bench.peers import summarize
from bench.peers_log import differences, expected, peers_log
from bench.peers_work import Outcome, admit, fold


def test_a_repeated_seq_is_dropped_and_a_skipped_one_is_still_admitted_once() -> None:
    seen = admit(None, 5)
    seen = admit(seen, 8)
    assert seen == [8, [[6, 7]]]
    assert admit(seen, 8) is None
    assert admit(seen, 5) is None
    filled = admit(seen, 6)
    assert filled == [8, [[7, 7]]]
    assert admit(filled, 6) is None


def test_a_window_keeps_count_sum_min_and_max_per_metric() -> None:
    window = fold(fold(None, {"t": 2.0, "h": 50.0}), {"t": 1.0, "h": float("nan")})
    assert window == {"t": [2, 3.0, 1.0, 2.0], "h": [1, 50.0, 50.0, 50.0]}


def test_redelivered_records_follow_their_original_on_its_partition() -> None:
    log = peers_log(2_000, 50, redeliveries=40)
    assert len(log) == 2_000
    first: dict[str, int] = {}
    repeats = 0
    for index, (partition, device_id, record) in enumerate(log):
        key = record["event_id"]
        if key in first:
            repeats += 1
            assert log[first[key]][0] == partition
        else:
            first[key] = index
        assert record["device_id"] == device_id
    assert repeats == 40


def test_a_peer_that_keeps_repeats_differs_from_the_oracle_and_fails() -> None:
    log = peers_log(2_000, 50, redeliveries=40)
    want = expected(log)
    careless = Outcome()
    for _, device_id, record in log:  # every record counted, repeats too
        count, latest = careless.devices.get(device_id, (0, {}))
        latest = {**latest, **{m: (v, record["ts"]) for m, v in record["metrics"].items()}}
        careless.devices[device_id] = (count + 1, latest)
    careless.windows.update(want.windows)
    found = differences(careless, want)
    assert len(found) == 1
    assert " devices differ, e.g. " in found[0]  # counted twice, and a repeat is older
    assert differences(want, want) == []
    verdict = summarize("bytewax", [{"events_per_s": 9, "matches_oracle": not found}])
    assert (verdict["status"], verdict["events_per_s"]) == ("failed", None)
