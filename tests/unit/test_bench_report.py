"""The benchmark report: each figure next to its raw limit and its target, missing ones named."""

from __future__ import annotations

import json
from pathlib import Path

from bench.report import collect, main


def _write(folder: Path, name: str, data: object) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data))


def test_figures_are_judged_against_their_targets_and_missing_benchmarks_are_named(
    tmp_path: Path,
) -> None:
    _write(
        tmp_path,
        "query_api",
        {
            "ingest_msgs_per_s": 5000.0,
            "point_query": {"achieved_rps": 500.0, "p99_ms": 12.5},
            "raw_healthz": {"p99_ms": 2.0},
            "freshness_ms": {"p99": 640.0},
        },
    )
    _write(
        tmp_path,
        "stream_worker",
        {
            "results": {
                "raw": {"events_per_s": 150_000},
                "sqlite": {"events_per_s": 31_000},
                "rebuild": {"events_per_s": 20_000},
                "rebuild_jobs2": {"events_per_s": 52_000},
            }
        },
    )
    figures, missing = collect(tmp_path)
    verdicts = {f.what: (f.measured, f.met) for f in figures}
    assert verdicts["HTTP point query p99 at 500 req/s during 5,000 msg/s"] == (12.5, False)
    assert verdicts["ingest → queryable freshness p99"] == (640.0, True)
    assert verdicts["stream worker, exactly-once, sqlite"] == (31_000, True)
    assert verdicts["stream worker, exactly-once, postgres"] == (None, None)  # not in this run
    assert verdicts["replay rebuild (rebuild, rebuild_jobs2)"] == (52_000, True)  # the best
    assert missing == ["avro_codec", "gateway_ingest", "stream_store", "peers"]


def test_peers_stand_beside_the_raw_loop_and_a_failed_peer_has_no_rate(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "peers",
        {
            "results": {
                "raw": {"status": "ok", "events_per_s": 200_000},
                "ours": {"status": "ok", "events_per_s": 40_000},
                "quix_exactly_once": {"status": "ok", "events_per_s": 10_000},
                "bytewax": {"status": "failed", "events_per_s": None},
            },
            "ratios": {
                "ours_vs_peer": {"quix_exactly_once": 4.0, "bytewax": None},
                "vs_raw": {"ours": 0.2, "quix_exactly_once": 0.05, "bytewax": None},
            },
        },
    )
    figures = {f.what: f for f in collect(tmp_path)[0] if f.benchmark == "peers"}
    quix = figures["quixstreams exactly-once, same log and work"]
    assert (quix.measured, quix.met) == (10_000, None)
    assert quix.raw_limit == "bare aiokafka loop 200,000 ev/s, 5.0% of it, ours/peer 4.00x"
    failed = figures[
        "bytewax with recovery, same log and work (failed: no output equal to the oracle's)"
    ]
    assert (failed.measured, failed.raw_limit) == (None, "bare aiokafka loop 200,000 ev/s")
    assert figures["quixstreams at-least-once, same log and work"].measured is None  # not run


def test_main_writes_one_summary_and_a_markdown_report(tmp_path: Path) -> None:
    _write(tmp_path, "avro_codec", {"encode": {"serde.encode": {"median_us": 12.0}}})
    assert main(["--results", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["targets_met"], summary["targets_judged"]) == (0, 1)
    report = (tmp_path / "REPORT.md").read_text()
    assert "| Avro encode of a telemetry record | 12.0 µs | - | ≤ 10 µs | **not met** |" in report
    assert "Not run yet: `bench.gateway_ingest`" in report
