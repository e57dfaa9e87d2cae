"""Benchmark: Avro encode/decode of one telemetry record, our serde vs fastavro vs the avro package.

Run from the repository root::

    python -m bench.avro_codec            # or: PYTHONPATH=. python bench/avro_codec.py

Writes ``bench/results/avro_codec.json`` and ``bench/results/avro_codec.png``. All variants
run in the same process on the same record (Telemetry v2, 5 metrics, 1 attribute) and the
same frame; each number is the median (and minimum) over ``--repeat`` interleaved rounds of
``--loops`` calls, in microseconds per record. The load average is recorded: on a busy
machine every variant slows down, compare ratios rather than absolute numbers.
Target (ARCHITECTURE.md): <= 10 us each for encode and decode.

Variants:
  encode  serde.encode                  fastavro schemaless_writer + Confluent header (ours)
  encode  fastavro raw                  schemaless_writer into a BytesIO, no framing
  encode  avro package                  DatumWriter + BinaryEncoder
  decode  serde.decode                  compiled bounds-checked reader, one pass (our hot path)
  decode  validator + fastavro          full pre-scan, then fastavro (same schema)
  decode  serde.decode, resolution      pre-scan + fastavro with a reader schema (v2 -> v1)
  decode  fastavro raw (no validator)   schemaless_reader trusting the bytes
  decode  avro package                  DatumReader + BinaryDecoder
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import platform
import statistics
import timeit
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro

from contracts.avro import HEADER_SIZE, SchemaCatalog, decode, encode
from tests.fakes import InMemorySchemas

TARGET_US = 10.0
RESULTS = Path(__file__).resolve().parent / "results"
SUBJECT = "iot.telemetry.v1-value"
RECORD: dict[str, Any] = {
    "event_id": "sensor-0042:1234",
    "device_id": "sensor-0042",
    "ts": 1714564800123,
    "received_at": 1714564800187,
    "seq": 1234,
    "metrics": {
        "temperature": 21.5,
        "humidity": 40.25,
        "pressure": 1013.2,
        "battery": 3.71,
        "rssi": -67.0,
    },
    "attributes": {"fw": "1.4.2"},
}


def _variants() -> tuple[dict[str, Callable[[], object]], dict[str, Callable[[], object]], int]:
    catalog = SchemaCatalog.load()
    v1, v2 = (v.schema for v in catalog.versions(SUBJECT))
    registry = InMemorySchemas()
    writer = registry.register(SUBJECT, v2)
    registry.register(SUBJECT, v1)
    frame = encode(RECORD, writer)
    body = frame[HEADER_SIZE:]

    avro_schema = avro.schema.parse(json.dumps(v2.definition))
    avro_writer, avro_reader = avro.io.DatumWriter(avro_schema), avro.io.DatumReader(avro_schema)
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    avro_record = {  # the avro package wants datetimes for timestamp-millis
        **RECORD,
        "ts": epoch + dt.timedelta(milliseconds=RECORD["ts"]),
        "received_at": epoch + dt.timedelta(milliseconds=RECORD["received_at"]),
    }

    def avro_encode() -> bytes:
        out = io.BytesIO()
        avro_writer.write(avro_record, avro.io.BinaryEncoder(out))
        return out.getvalue()

    def fastavro_encode() -> bytes:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, v2.parsed, RECORD)
        return out.getvalue()

    def fastavro_decode() -> object:
        return fastavro.schemaless_reader(io.BytesIO(body), v2.resolving, None)

    def validated_fastavro_decode() -> object:
        v2.check_binary(frame, HEADER_SIZE)
        src = io.BytesIO(frame)
        src.seek(HEADER_SIZE)
        return fastavro.schemaless_reader(src, v2.resolving, None)

    assert avro_encode() == body == fastavro_encode()
    assert decode(frame, registry) == RECORD == fastavro_decode() == validated_fastavro_decode()

    encoders: dict[str, Callable[[], object]] = {
        "serde.encode": lambda: encode(RECORD, writer),
        "fastavro raw": fastavro_encode,
        "avro package": avro_encode,
    }
    decoders: dict[str, Callable[[], object]] = {
        "serde.decode": lambda: decode(frame, registry),
        "validator + fastavro": validated_fastavro_decode,
        "serde.decode, resolution": lambda: decode(frame, registry, reader=v1),
        "fastavro raw (no validator)": fastavro_decode,
        "avro package": lambda: avro_reader.read(avro.io.BinaryDecoder(io.BytesIO(body))),
    }
    return encoders, decoders, len(frame)


def _measure(
    variants: dict[str, Callable[[], object]], loops: int, repeat: int
) -> dict[str, dict[str, float]]:
    """µs per call of each variant; rounds are interleaved so every variant sees the same
    background load (the dev machine is shared), then summarized by median and minimum."""
    rounds: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        fn()  # warm caches
    for _ in range(repeat):
        for name, fn in variants.items():
            rounds[name].append(timeit.timeit(fn, number=loops) / loops * 1e6)
    return {
        name: {"median_us": statistics.median(times), "min_us": min(times)}
        for name, times in rounds.items()
    }


def _chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib  # noqa: PLC0415 - optional plotting dependency, loaded only here

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [
        (f"{op}: {name}", data["median_us"])
        for op in ("encode", "decode")
        for name, data in results[op].items()
    ]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels, values = zip(*reversed(rows), strict=True)
    colors = ["tab:blue" if label.startswith("encode") else "tab:orange" for label in labels]
    bars = ax.barh(labels, values, color=colors)
    ax.bar_label(bars, fmt="%.1f µs", padding=3, fontsize=8)
    ax.axvline(TARGET_US, color="red", linestyle="--", label=f"target {TARGET_US:g} µs")
    ax.set_xlim(0, max(values) * 1.15)
    ax.set_xlabel("µs per telemetry record (median; shorter is better)")
    ax.set_title(f"Avro codec, telemetry record ({results['frame_bytes']} bytes framed)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loops", type=int, default=10_000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=15, help="rounds per variant")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args()

    encoders, decoders, frame_bytes = _variants()
    results: dict[str, Any] = {
        "benchmark": "avro_codec",
        "record": "Telemetry v2, 5 metrics, 1 attribute",
        "frame_bytes": frame_bytes,
        "loops": args.loops,
        "repeat": args.repeat,
        "target_us": TARGET_US,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "fastavro": metadata.version("fastavro"),
            "avro": metadata.version("avro"),
        },
        "load_average_before": os.getloadavg()[0],
        "encode": _measure(encoders, args.loops, args.repeat),
        "decode": _measure(decoders, args.loops, args.repeat),
    }
    for op in ("encode", "decode"):
        baseline = results[op]["avro package"]["median_us"]
        for data in results[op].values():
            data["speedup_vs_avro_package"] = round(baseline / data["median_us"], 2)
    results["meets_target"] = {  # by median, and by minimum (the cost without interference)
        stat: {
            "encode": results["encode"]["serde.encode"][f"{stat}_us"] <= TARGET_US,
            "decode": results["decode"]["serde.decode"][f"{stat}_us"] <= TARGET_US,
        }
        for stat in ("median", "min")
    }

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "avro_codec.json").write_text(json.dumps(results, indent=2) + "\n")
    _chart(results, args.out / "avro_codec.png")
    for op in ("encode", "decode"):
        for name, data in results[op].items():
            print(
                f"{op:6} {name:28} {data['median_us']:8.2f} µs (min {data['min_us']:.2f})"
                f"  x{data['speedup_vs_avro_package']} vs avro package"
            )
    print(f"meets {TARGET_US:g} µs target: {results['meets_target']}")
    print(
        f"load average before/after: {results['load_average_before']:.2f}/{os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
