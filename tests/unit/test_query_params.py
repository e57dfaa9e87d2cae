"""Query parameters: every refusal names its parameter; valid input round-trips."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from contracts.partitioning import partition_for
from contracts.times import epoch_ms, rfc3339
from streams.domain import TopicPartition
from streams.query import BadParameterError, NotCaughtUpError, openapi_document
from streams.query.logtail import format_vector, parse_vector
from streams.query.params import (
    MAX_LIMIT,
    parse_aggregates,
    parse_consistency,
    parse_devices,
    parse_history,
    parse_limit,
    parse_time,
)
from streams.query.positions import LogPositions


def _refused(parameter: str, call: object, *args: object) -> None:
    with pytest.raises(BadParameterError) as caught:
        call(*args)  # type: ignore[operator]
    assert caught.value.parameter == parameter
    assert caught.value.body()["parameter"] == parameter


@given(st.integers(1, MAX_LIMIT))
def test_limits_in_range_are_taken(limit: int) -> None:
    assert parse_limit({"limit": str(limit)}) == limit


@given(st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_LIMIT + 1), st.text()))
def test_limits_out_of_range_or_not_numbers_are_refused(raw: object) -> None:
    value = str(raw)
    if value.isdecimal() and 1 <= int(value) <= MAX_LIMIT:
        return
    _refused("limit", parse_limit, {"limit": value})


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(9000, 1, 1)))
def test_iso_and_epoch_times_agree(moment: dt.datetime) -> None:
    aware = moment.replace(tzinfo=dt.UTC, microsecond=moment.microsecond // 1000 * 1000)
    ms = epoch_ms(aware)
    assert parse_time({"t": aware.isoformat()}, "t", required=True) == ms
    assert parse_time({"t": str(ms)}, "t", required=True) == ms


@given(st.integers(0, 253_402_300_799_999))
def test_a_time_an_answer_gives_reads_back_as_the_same_millisecond(ms: int) -> None:
    assert parse_time({"t": rfc3339(ms)}, "t", required=True) == ms


def test_times_without_zone_or_garbage_are_refused() -> None:
    def required(query: dict[str, str]) -> object:
        return parse_time(query, "from", required=True)

    _refused("from", required, {"from": "2026-01-01T00:00:00"})
    _refused("from", required, {"from": "yesterday"})
    _refused("from", required, {})
    assert parse_time({}, "from", required=False) is None


def test_aggregate_ranges_must_be_bounded_ordered_and_at_a_known_resolution() -> None:
    ok = parse_aggregates({"metric": "t", "from": "0", "to": "60000", "resolution": "1m"})
    assert (ok.size_ms, ok.start_ms, ok.end_ms) == (60_000, 0, 60_000)
    _refused("metric", parse_aggregates, {"from": "0", "to": "1"})
    _refused("to", parse_aggregates, {"metric": "t", "from": "5", "to": "5"})
    _refused("to", parse_aggregates, {"metric": "t", "from": "0"})
    _refused("from", parse_aggregates, {"metric": "t", "to": "9"})
    _refused("to", parse_aggregates, {"metric": "t", "from": "0", "to": str(8 * 86_400_000)})
    _refused(
        "resolution", parse_aggregates, {"metric": "t", "from": "0", "to": "9", "resolution": "5m"}
    )
    assert (
        parse_aggregates(
            {"metric": "t", "from": "0", "to": str(300 * 86_400_000), "resolution": "1h"}
        ).size_ms
        == 3_600_000
    )


def test_consistency_devices_and_history_parameters() -> None:
    assert parse_consistency({}).mode == "eventual"
    assert parse_consistency({"consistency": "strong", "timeout_ms": "250"}).timeout_ms == 250
    _refused("consistency", parse_consistency, {"consistency": "linearizable"})
    _refused("timeout_ms", parse_consistency, {"timeout_ms": "0"})
    _refused("timeout_ms", parse_consistency, {"timeout_ms": "99999999"})
    _refused("after", parse_devices, {"after": "a/b"})
    _refused("has_metric", parse_devices, {"has_metric": ""})
    assert parse_devices({"seen_since": "5", "has_metric": "t"}).seen_since == 5
    assert parse_history({"from": "0"}, now_ms=10).end_ms == 11
    _refused("to", parse_history, {"from": "10", "to": "3"}, 10)
    _refused("device_id", parse_history, {"from": "0", "device_id": "a+b"}, 10)


@given(st.dictionaries(st.integers(0, 64), st.integers(-1, 2**40), min_size=1))
def test_position_vectors_round_trip(vector: dict[int, int]) -> None:
    assert parse_vector(format_vector(vector), "Last-Event-ID", vector) == vector


def test_position_vectors_must_name_exactly_the_streams_partitions() -> None:
    _refused("Last-Event-ID", parse_vector, "0:1", "Last-Event-ID", [0, 1])
    _refused("Last-Event-ID", parse_vector, "0:1,0:2", "Last-Event-ID", [0])
    _refused("after", parse_vector, "zero:one", "after", [0])
    _refused("after", parse_vector, "0:-2", "after", [0])


@given(st.text(min_size=1, max_size=40), st.integers(1, 64))
def test_partitions_follow_kafkas_default_partitioner(key: str, partitions: int) -> None:
    chosen = DefaultPartitioner()(key.encode(), list(range(partitions)), list(range(partitions)))
    assert partition_for(key, partitions) == chosen


class _Positions:
    def __init__(self, offset: int) -> None:
        self.offset = offset

    def positions(self, group: str) -> dict[TopicPartition, int]:
        return {TopicPartition("t", 0): self.offset}


async def test_a_strong_read_waits_for_the_end_offset_and_times_out_with_the_lag() -> None:
    store = _Positions(4)
    positions = LogPositions(None, "t", 1, store, "g")  # type: ignore[arg-type]

    async def ends(partitions: object) -> dict[int, int]:
        return {0: 10}

    positions.end_offsets = ends  # type: ignore[method-assign]
    with pytest.raises(NotCaughtUpError) as caught:
        await positions.strong([0], timeout_ms=30)
    assert caught.value.lag == 5
    assert caught.value.status == 504

    async def catch_up() -> None:
        await asyncio.sleep(0.05)
        store.offset = 9

    task = asyncio.create_task(catch_up())
    reflects = await positions.strong([0], timeout_ms=2000)
    await task
    assert (reflects.lag, dict(reflects.applied), dict(reflects.end)) == (0, {0: 9}, {0: 10})


def test_the_openapi_document_names_every_route_and_parameter_it_validates() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"/api/devices", "/api/devices/{device_id}/aggregates", "/api/alerts/stream"} <= set(
        paths
    )
    names = {p["name"] for p in paths["/api/devices/{device_id}/aggregates"]["get"]["parameters"]}
    assert {"metric", "resolution", "from", "to", "consistency", "timeout_ms"} <= names
