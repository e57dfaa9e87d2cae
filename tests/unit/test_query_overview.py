"""The overview's hour of ingest: rates and freshness from successive log samples."""

from __future__ import annotations

from streams.query.overview import IngestSample, IngestSamples, sample_of


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
