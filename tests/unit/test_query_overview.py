"""The fleet overview: rates and freshness from successive log samples, and the answer."""

from __future__ import annotations

from contracts.kafka import KafkaClientSettings
from streams.query.dlq import DlqRejections
from streams.query.overview import IngestSample, IngestSamples, sample_of
from streams.query.positions import Reflects
from streams.query.presence import Presence
from streams.query.service import QueryService
from streams.store import FleetCounts


def test_rates_and_freshness_come_from_successive_samples() -> None:
    samples = IngestSamples(span_s=3600, every_s=10)
    samples.add(IngestSample(0, written=1_000, applied=1_000))
    samples.add(IngestSample(10_000, written=3_000, applied=2_500))
    samples.add(IngestSample(20_000, written=3_000, applied=3_000))
    first, second = samples.series()
    assert first["time_ms"] == 10_000
    assert first["ingest_per_s"] == 200.0
    assert first["applied_per_s"] == 150.0
    assert first["lag"] == 500
    assert first["freshness_s"] == round(500 / 150, 3)
    assert (second["ingest_per_s"], second["lag"], second["freshness_s"]) == (0.0, 0, 0.0)


def test_a_lag_with_nothing_applied_has_no_freshness_to_tell() -> None:
    samples = IngestSamples()
    samples.add(IngestSample(0, written=10, applied=0))
    samples.add(IngestSample(10_000, written=20, applied=0))
    assert samples.series()[0]["freshness_s"] is None


def test_only_the_last_span_is_kept() -> None:
    samples = IngestSamples(span_s=60, every_s=10)
    for i in range(20):
        samples.add(IngestSample(i * 10_000, written=i, applied=i))
    times = [point["time_ms"] for point in samples.series()]
    assert times[0] == 140_000  # the samples from 130 s on are within 60 s of the last
    assert times[-1] == 190_000


def test_a_sample_counts_what_each_partition_applied_and_holds() -> None:
    sample = sample_of(5, applied={0: 9, 1: -1}, end={0: 12, 1: 3})
    assert (sample.written, sample.applied, sample.lag) == (15, 10, 5)


class _Fleet:
    """A store that knows only its fleet counts, and the time they were asked about."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def fleet_counts(self, seen_since: int) -> FleetCounts:
        self.asked.append(seen_since)
        return FleetCounts(devices=7, seen=4, active_alerts=2)


class _Positions:
    partitions = 2

    async def eventual(self, partitions: list[int]) -> Reflects:
        return Reflects("eventual", {0: 9, 1: -1}, {0: 12, 1: 3}, 5, 0)


async def test_the_overview_gathers_counts_presence_lag_ingest_and_the_dlq() -> None:
    store = _Fleet()
    kafka = KafkaClientSettings()
    presence, dlq = Presence(kafka, "events", 0), DlqRejections(kafka, "dlq", 0)
    presence.take(b"d1", {"kind": b"CONNECTED", "ts": b"1"})
    dlq.add("d1", "too_large", 600_000)
    service = QueryService(
        [store],  # type: ignore[list-item]
        _Positions(),  # type: ignore[arg-type]
        dlq,
        presence,
        clock=lambda: 900.0,
    )
    samples = IngestSamples()
    samples.add(IngestSample(880_000, written=0, applied=0))
    samples.add(IngestSample(890_000, written=100, applied=95))
    body = await service.overview(5, samples)
    assert store.asked == [900_000 - 5 * 60_000]
    assert body["devices"] == {
        "total": 7,
        "seen": 4,
        "seen_minutes": 5,
        "online": 1,
        "presence_caught_up": True,
    }
    assert body["alerts"] == {"active": 2}
    assert body["partitions"] == [
        {"partition": 0, "applied": 9, "end": 12, "lag": 2},
        {"partition": 1, "applied": -1, "end": 3, "lag": 3},
    ]
    (point,) = body["ingest"]
    assert (point["ingest_per_s"], point["lag"]) == (10.0, 5)
    assert body["dlq"]["minutes"][0]["by_reason"] == {"too_large": 1}
