"""One report over every benchmark's results: ``bench/results/summary.json`` and ``REPORT.md``.

Each benchmark writes its own JSON (with the raw limit it measured in the same run); this
module reads them, takes each headline figure next to its raw limit and its target from the
architecture page, and says whether the target is met. A benchmark that has not run yet is
listed as missing rather than left out. ``make bench`` runs it last; on its own:
``python -m bench.report``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure, the raw limit measured beside it, and its target."""

    benchmark: str
    what: str
    measured: float | None
    unit: str
    target: str
    met: bool | None
    raw_limit: str = ""

    def row(self) -> str:
        measured = (
            "not measured" if self.measured is None else f"{_number(self.measured)} {self.unit}"
        )
        verdict = {True: "met", False: "**not met**", None: "n/a"}[self.met]
        return f"| {self.what} | {measured} | {self.raw_limit or '-'} | {self.target} | {verdict} |"


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _at_most(value: float | None, target: float) -> bool | None:
    return None if value is None else value <= target


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def avro_codec(data: dict[str, Any]) -> Iterator[Figure]:
    name = "avro_codec"
    for side, mine in (("encode", "serde.encode"), ("decode", "serde.decode")):
        measured = _get(data, side, mine, "median_us")
        raw = _get(data, side, "avro package", "median_us")
        yield Figure(
            name,
            f"Avro {side} of a telemetry record",
            measured,
            "µs",
            "≤ 10 µs",
            _at_most(measured, 10.0),
            f"avro package {_number(raw)} µs" if raw else "",
        )


def gateway_ingest(data: dict[str, Any]) -> Iterator[Figure]:
    name = "gateway_ingest"
    throughput = _get(data, "summary", "throughput_msg_s") or {}
    one = _get(throughput, "gateway_x1", "median")
    two = _get(throughput, "gateway_x2", "median")
    sub = _get(throughput, "mosquitto_sub_receive", "median")
    kcat = _get(throughput, "kcat_produce", "median")
    limits = ", ".join(
        f"{label} {_number(value)} msg/s"
        for label, value in (("mosquitto_sub", sub), ("kcat -P", kcat))
        if value
    )
    yield Figure(
        name,
        "gateway ingest, one process",
        one,
        "msg/s",
        "≥ 20,000 msg/s",
        _at_least(one, 20_000),
        limits,
    )
    scaling = two / one if one and two else None
    yield Figure(
        name, "two gateway processes vs one", scaling, "x", "≥ 1.7x", _at_least(scaling, 1.7)
    )
    latency = _get(data, "summary", "latency_ms_at_offered_rate") or {}
    p99 = _get(latency, "gateway_histogram_p99", "median")
    yield Figure(
        name,
        "publish → Kafka ack p99 at 5k msg/s (gateway side)",
        p99,
        "ms",
        "≤ 50 ms",
        _at_most(p99, 50.0),
    )
    yield from _gateway_direct(data, throughput, limits)


def _gateway_direct(data: dict[str, Any], throughput: Any, limits: str) -> Iterator[Figure]:
    """The direct-mode figures of ``gateway_ingest`` (the gateway as the MQTT server)."""
    name = "gateway_ingest"
    one = _get(throughput, "direct_x1", "median")
    two = _get(throughput, "direct_x2", "median")
    bridge = _get(throughput, "gateway_x1", "median")
    loadgen = _get(throughput, "loadgen_alone", "median")
    direct_limits = ", ".join(
        part
        for part in (
            limits,
            f"loadgen alone {_number(loadgen)} msg/s" if loadgen else "",
            f"bridge x1 {_number(bridge)} msg/s" if bridge else "",
        )
        if part
    )
    yield Figure(
        name,
        "gateway direct mode, one process (QoS 1, PUBACK after Kafka ack)",
        one,
        "msg/s",
        "≥ 25,000 msg/s",
        _at_least(one, 25_000),
        direct_limits,
    )
    cpu = _get(data, "summary", "gateway_cpu_us_per_msg", "direct_x1", "median")
    bridge_cpu = _get(data, "summary", "gateway_cpu_us_per_msg", "x1", "median")
    yield Figure(
        name,
        "direct mode gateway CPU per message (saturated)",
        cpu,
        "µs",
        "≤ 35 µs",
        _at_most(cpu, 35.0),
        f"bridge {_number(bridge_cpu)} µs" if bridge_cpu else "",
    )
    scaling = two / one if one and two else None
    yield Figure(name, "direct mode, two processes on one port vs one", scaling, "x", "-", None)
    latency = _get(data, "summary", "latency_ms_at_offered_rate") or {}
    p99 = _get(latency, "direct_puback_p99", "median")
    yield Figure(
        name,
        "direct publish → PUBACK p99 at 5k msg/s (includes the Kafka ack)",
        p99,
        "ms",
        "≤ 20 ms",
        _at_most(p99, 20.0),
    )
    rate = _get(data, "summary", "direct_connect", "connections_per_s", "median")
    claimed = _get(data, "settings", "edge_sessions") != "off"
    yield Figure(
        name,
        "direct mode connections/s (MQTT 5 CONNECT → "
        + ("claim in Kafka → CONNACK)" if claimed else "CONNACK, no sessions topic)"),
        rate,
        "conn/s",
        "-",
        None,
    )
    yield from _gateway_uvloop(data)


_UVLOOP_ROWS = (
    ("x1_msg_s", "direct mode on uvloop, one process", "msg/s"),
    ("x1_cpu_us_per_msg", "direct mode on uvloop, gateway CPU per message (saturated)", "µs"),
    ("x2_msg_s", "direct mode on uvloop, two processes on one port", "msg/s"),
    ("puback_p99_ms_at_5k", "direct mode on uvloop, publish → PUBACK p99 at 5k msg/s", "ms"),
    ("connections_per_s", "direct mode on uvloop, connections/s", "conn/s"),
)


def _gateway_uvloop(data: dict[str, Any]) -> Iterator[Figure]:
    """The direct-mode figures measured again with ``event_loop: uvloop``, each next to the
    default loop's (asyncio) of the same run and the median of the per-repeat ratios."""
    compared = _get(data, "summary", "uvloop_vs_asyncio") or {}
    for key, what, unit in _UVLOOP_ROWS:
        figure = compared.get(key)
        if not figure:
            continue
        base, ratio = figure["asyncio_median"], figure["ratio_median"]
        yield Figure(
            "gateway_ingest",
            what,
            figure["uvloop_median"],
            unit,
            "-",
            None,
            f"asyncio {_number(base)} {unit}; uvloop/asyncio {ratio:.2f}x (median of repeats)",
        )


def stream_worker(data: dict[str, Any]) -> Iterator[Figure]:
    name = "stream_worker"
    raw = _get(data, "results", "raw", "events_per_s")
    limit = f"bare aiokafka loop {_number(raw)} ev/s" if raw else ""
    for store, target in (("sqlite", 30_000), ("postgres", 15_000)):
        rate = _get(data, "results", store, "events_per_s")
        yield Figure(
            name,
            f"stream worker, exactly-once, {store}",
            rate,
            "ev/s",
            f"≥ {target:,} ev/s",
            _at_least(rate, target),
            limit,
        )
    rebuilds = {
        key: value["events_per_s"]
        for key, value in (_get(data, "results") or {}).items()
        if key.startswith("rebuild") and isinstance(value, dict) and "events_per_s" in value
    }
    best = max(rebuilds.values(), default=None)
    live = _get(data, "results", "sqlite", "events_per_s")
    yield Figure(
        name,
        f"replay rebuild ({', '.join(sorted(rebuilds)) or 'rebuild'})",
        best,
        "ev/s",
        "≥ 50,000 ev/s",
        _at_least(best, 50_000),
        ", ".join(p for p in (limit, f"live worker {_number(live)} ev/s" if live else "") if p),
    )


def stream_store(data: dict[str, Any]) -> Iterator[Figure]:
    name = "stream_store"
    raw = _get(data, "raw_limit_projections_in_memory_events_per_s", "fleet")
    for store, target in (("sqlite", 30_000), ("postgres", 15_000)):
        runs = _get(data, "results", f"{store}/fleet") or {}
        best = max((r.get("best", 0) for r in runs.values() if isinstance(r, dict)), default=None)
        yield Figure(
            name,
            f"processor + {store} store in-process (no Kafka)",
            best,
            "ev/s",
            f"≥ {target:,} ev/s",
            _at_least(best, target),
            f"projections in memory {_number(raw)} ev/s" if raw else "",
        )


def query_api(data: dict[str, Any]) -> Iterator[Figure]:
    name = "query_api"
    rps = _get(data, "point_query", "achieved_rps")
    ingest = _get(data, "ingest_msgs_per_s")
    p99 = _get(data, "point_query", "p99_ms")
    raw = _get(data, "raw_healthz", "p99_ms")
    yield Figure(
        name,
        f"HTTP point query p99 at {_number(rps or 0)} req/s during {_number(ingest or 0)} msg/s",
        p99,
        "ms",
        "≤ 10 ms",
        _at_most(p99, 10.0),
        f"/healthz p99 {_number(raw)} ms" if raw else "",
    )
    fresh = _get(data, "freshness_ms", "p99")
    yield Figure(
        name,
        "ingest → queryable freshness p99",
        fresh,
        "ms",
        "≤ 1,000 ms",
        _at_most(fresh, 1000.0),
    )


_PEER_ROWS = {
    "ours": "our worker beside its peers (exactly-once, SQLite), same log",
    "quix_exactly_once": "quixstreams exactly-once, same log and work",
    "quix_at_least_once": "quixstreams at-least-once, same log and work",
    "bytewax": "bytewax with recovery, same log and work",
}


def peers(data: dict[str, Any]) -> Iterator[Figure]:
    """Our worker and each peer on one log: events/s beside the bare loop of the same run,
    the share of it each reaches and ours against each peer; a peer whose output differed
    from the oracle has no rate."""
    raw = _get(data, "results", "raw", "events_per_s")
    for system, what in _PEER_ROWS.items():
        failed = _get(data, "results", system, "status") == "failed"
        vs_raw = _get(data, "ratios", "vs_raw", system)
        ours_vs = _get(data, "ratios", "ours_vs_peer", system)
        limit = ", ".join(
            part
            for part in (
                f"bare aiokafka loop {_number(raw)} ev/s" if raw else "",
                f"{vs_raw:.1%} of it" if vs_raw else "",
                f"ours/peer {ours_vs:.2f}x" if ours_vs else "",
            )
            if part
        )
        yield Figure(
            "peers",
            what + (" (failed: no output equal to the oracle's)" if failed else ""),
            _get(data, "results", system, "events_per_s"),
            "ev/s",
            "-",
            None,
            limit,
        )


EXTRACTORS: dict[str, Callable[[dict[str, Any]], Iterator[Figure]]] = {
    "avro_codec": avro_codec,
    "gateway_ingest": gateway_ingest,
    "stream_store": stream_store,
    "stream_worker": stream_worker,
    "query_api": query_api,
    "peers": peers,
}


def collect(results: Path) -> tuple[list[Figure], list[str]]:
    """Every figure of every benchmark found in ``results``, and the benchmarks missing."""
    figures: list[Figure] = []
    missing: list[str] = []
    for name, extract in EXTRACTORS.items():
        path = results / f"{name}.json"
        if not path.is_file():
            missing.append(name)
            continue
        figures.extend(extract(json.loads(path.read_text())))
    return figures, missing


def markdown(figures: list[Figure], missing: list[str]) -> str:
    met = sum(1 for f in figures if f.met)
    judged = sum(1 for f in figures if f.met is not None)
    lines = [
        "# Benchmark report",
        "",
        f"{met} of {judged} targets met on this machine (2 cores shared by the servers, the "
        "load generators and the process measured). Each figure stands next to the raw limit "
        "measured in the same run; the per-benchmark JSON and PNG files beside this report "
        "hold the distributions, repeats and machine load.",
        "",
        "| figure | measured | raw limit, same run | target | |",
        "|---|---|---|---|---|",
        *(figure.row() for figure in figures),
    ]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(f"`bench.{name}`" for name in missing) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder of results JSON")
    args = parser.parse_args(argv)
    figures, missing = collect(args.results)
    summary = {
        "figures": [asdict(figure) for figure in figures],
        "missing": missing,
        "targets_met": sum(1 for f in figures if f.met),
        "targets_judged": sum(1 for f in figures if f.met is not None),
    }
    (args.results / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    report = markdown(figures, missing)
    (args.results / "REPORT.md").write_text(report)
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
