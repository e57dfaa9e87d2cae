"""The soak's verdict: a line through each series after the warm-up, flat within a tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.soak_report import TABLES, Criteria, chart, fit, judge, summary, trend

CRITERIA = Criteria(warmup_s=100, tolerance_pct=5.0, rate=2000, lag_bound_s=10)


def _samples(
    *, store_per_s: float = 0.0, rss_per_s: float = 0.0, lag: int = 300, rate: float = 2000
) -> list[dict[str, Any]]:
    """A run of 400 s sampled every 10 s: 10 MB store and 100 MB RSS at the warm-up's end,
    growing by the given bytes per second; a drain sample at the end."""
    samples = [
        {
            "t": float(t),
            "phase": "load",
            "acked": int(rate * t),
            "lag": lag,
            "store": {"bytes": 10e6 + store_per_s * (t - 100), "live_bytes": 5e6},
            "rows": dict.fromkeys(TABLES, 1000),
            "rss": {"worker": 100e6 + rss_per_s * (t - 100), "gateway": 80e6},
        }
        for t in range(10, 410, 10)
    ]
    samples.append({**samples[-1], "t": 420.0, "phase": "drain", "lag": 0})
    return samples


def test_fit_recovers_a_line() -> None:
    slope, intercept = fit([(0, 1.0), (1, 3.0), (2, 5.0)])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(1.0)


def test_a_series_shrinking_is_flat_and_too_few_points_are_no_verdict() -> None:
    shrinking = trend([(0, 10.0), (10, 9.0), (20, 8.0)], 5.0)
    assert shrinking is not None
    assert shrinking.flat
    assert trend([(0, 1.0), (10, 1.0)], 5.0) is None


def test_flat_series_and_a_kept_up_rate_pass() -> None:
    verdict = judge(_samples(store_per_s=50.0), CRITERIA)  # +30 kB per 10 min of 10 MB: 0.3%
    assert verdict["ok"]
    assert verdict["samples_after_warmup"] == 31  # the drain sample is not judged
    assert verdict["store_bytes"]["pct_per_10min"] == pytest.approx(0.3, abs=0.01)
    assert verdict["growing_tables"] == []


def test_rss_growing_beyond_the_tolerance_fails_and_is_named() -> None:
    verdict = judge(_samples(rss_per_s=10_000.0), CRITERIA)  # +6 MB per 10 min of ~101 MB
    assert not verdict["ok"]
    assert not verdict["flat"]
    assert verdict["kept_up"]
    assert not verdict["rss_bytes"]["worker"]["flat"]
    assert verdict["rss_bytes"]["gateway"]["flat"]
    criteria = {"warmup_s": 100, "tolerance_pct": 5.0, "rate": 2000}
    table = summary({"verdict": verdict, "samples": _samples(), "criteria": criteria})
    assert "worker RSS MiB" in table
    assert "NO" in table


@pytest.mark.parametrize(
    ("lag", "rate"), [(30_000, 2000), (300, 1500)], ids=["lag beyond bound", "rate short"]
)
def test_a_run_that_fell_behind_did_not_keep_up(lag: int, rate: float) -> None:
    verdict = judge(_samples(lag=lag, rate=rate), CRITERIA)
    assert verdict["flat"]
    assert not verdict["kept_up"]
    assert not verdict["ok"]


def test_the_chart_is_written(tmp_path: Path) -> None:
    samples = _samples()
    report = {
        "samples": samples,
        "verdict": judge(samples, CRITERIA),
        "criteria": {"warmup_s": 100},
        "config": {"store": "sqlite", "rate": 2000, "duration_s": 400},
    }
    chart(report, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").read_bytes()[:4] == b"\x89PNG"


def test_a_minutely_saw_tooth_is_flat_once_averaged_over_its_period() -> None:
    """Rows pruned once a minute climb and drop; whatever the phase, no trend is left."""
    for phase in range(0, 60, 10):
        samples = _samples()
        for sample in samples:
            sample["rows"] = {**sample["rows"], "outbox": 500 + 80 * ((sample["t"] + phase) % 60)}
        verdict = judge(samples, CRITERIA)
        assert verdict["rows"]["outbox"]["flat"], phase
        assert verdict["growing_tables"] == []
