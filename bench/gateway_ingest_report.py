"""Numbers and charts of the gateway ingest benchmark (see ``bench/gateway_ingest.py``).

Pure functions of the samples the benchmark collected: rates of counters over a window,
quantiles, the Prometheus-style histogram quantile, the summary with ratios and targets, and
the PNG charts.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

TARGET_PER_PROCESS = 20_000.0
TARGET_SCALING = 1.7
TARGET_P99_MS = 50.0

_LABELS = {
    "loadgen_alone": "loadgen -> broker (nothing subscribed)",
    "loadgen_with_mosquitto_sub": "loadgen -> broker (mosquitto_sub subscribed)",
    "mosquitto_sub_receive": "broker -> C mosquitto_sub, QoS 1 (raw MQTT limit)",
    "kcat_produce": "kcat -P idempotent, acks=all (raw Kafka limit)",
    "gateway_x1": "gateway x1 (Kafka-acked)",
    "gateway_x2": "gateway x2 (Kafka-acked)",
}


# ---------------------------------------------------------------------------- analysis


def slope(points: list[tuple[float, float]], t0: float, t1: float) -> float:
    """Rate of a counter between t0 and t1, from the first and last sample inside."""
    inside = [(t, v) for t, v in points if t0 <= t <= t1]
    if len(inside) < 2:
        return 0.0
    (ta, va), (tb, vb) = inside[0], inside[-1]
    return (vb - va) / (tb - ta) if tb > ta else 0.0


def quantiles(values: list[float], qs: tuple[float, ...]) -> list[float] | None:
    if len(values) < 2:
        return None
    ordered = sorted(values)
    return [ordered[min(len(ordered) - 1, int(q * len(ordered)))] for q in qs]


def bucket_quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Quantile in ms of cumulative (upper bound s, count) buckets, interpolated linearly
    inside the bucket that holds rank q (what Prometheus' histogram_quantile does)."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, cumulative in buckets:
        if cumulative >= rank:
            if bound == float("inf"):
                return round(lower_bound * 1000, 2)
            share = (rank - lower_count) / max(cumulative - lower_count, 1e-9)
            return round((lower_bound + (bound - lower_bound) * share) * 1000, 2)
        lower_bound, lower_count = bound, cumulative
    return None


def latency_summary(latencies: list[float], missing: int = 0) -> dict[str, Any]:
    """Quantiles in ms over every record sent in the window. A record that never arrived
    counts as infinitely late: a quantile that falls on one is None (beyond the wait)."""
    ordered = sorted(latencies) + [float("inf")] * missing
    if not ordered:
        return {"samples": 0, "p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}

    def at(q: float) -> float | None:
        value = ordered[min(len(ordered) - 1, int(q * len(ordered)))]
        return None if value == float("inf") else round(value * 1000, 2)

    return {
        "samples": len(latencies),
        "p50_ms": at(0.5),
        "p90_ms": at(0.9),
        "p99_ms": at(0.99),
        "max_ms": at(1.0),
    }


def cdf(latencies: list[float], points: int = 200) -> list[tuple[float, float]]:
    """About ``points`` (ms, fraction) pairs of the empirical distribution."""
    ordered = sorted(latencies)
    if not ordered:
        return []
    step = max(1, len(ordered) // points)
    return [
        (round(ordered[i] * 1000, 3), round((i + 1) / len(ordered), 4))
        for i in range(0, len(ordered), step)
    ] + [(round(ordered[-1] * 1000, 3), 1.0)]


# ---------------------------------------------------------------------------- summary


def _stats(values: list[float]) -> dict[str, Any] | None:
    if not values:
        return None
    median = statistics.median(values)
    return {
        "median": round(median, 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "spread_pct": round(100 * (max(values) - min(values)) / median, 1) if median else None,
        "values": [round(v, 1) for v in values],
    }


def _late_stats(values: list[float | None]) -> dict[str, Any] | None:
    """Like ``_stats`` for latencies where None means "beyond the wait": it sorts last."""
    if not values:
        return None
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    median = ordered[(len(ordered) - 1) // 2] if len(ordered) % 2 else None
    if len(ordered) % 2 == 0:
        low, high = ordered[len(ordered) // 2 - 1], ordered[len(ordered) // 2]
        median = None if low is None or high is None else (low + high) / 2
    return {
        "median": None if median is None else round(median, 1),
        "min": ordered[0],
        "max": ordered[-1],
        "values": values,
        "beyond_wait": sum(v is None for v in values),
    }


def summarize(phases: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Medians and spread over repeats, ratios to the raw limits, and the targets."""

    def raw(name: str, *path: str) -> list[Any]:
        found = []
        for run in phases.get(name, []):
            value: Any = run
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            found.append(value)
        return found

    def values(name: str, *path: str) -> list[float]:
        return [float(v) for v in raw(name, *path) if isinstance(v, int | float)]

    throughput = {
        "loadgen_alone": _stats(values("loadgen", "rate")),
        "loadgen_with_mosquitto_sub": _stats(values("mosquitto_sub", "loadgen_rate")),
        "mosquitto_sub_receive": _stats(values("mosquitto_sub", "rate")),
        "kcat_produce": _stats(values("kcat", "rate")),
        "gateway_x1": _stats(values("gateway_x1", "rate")),
        "gateway_x2": _stats(values("gateway_x2", "rate")),
    }
    latency = {
        "gateway_histogram_p50": _stats(values("latency", "gateway_histogram", "p50_ms")),
        "gateway_histogram_p99": _stats(values("latency", "gateway_histogram", "p99_ms")),
        "end_to_end_p50": _late_stats(raw("latency", "end_to_end", "p50_ms")),
        "end_to_end_p99": _late_stats(raw("latency", "end_to_end", "p99_ms")),
        "send_to_record_created_p99": _late_stats(
            raw("latency", "end_to_end_parts", "send_to_record_created", "p99_ms")
        ),
        "record_created_to_consumer_p99": _late_stats(
            raw("latency", "end_to_end_parts", "record_created_to_consumer", "p99_ms")
        ),
        "end_to_end_missing": _stats(values("latency", "end_to_end", "missing")),
        "achieved_rate": _stats(values("latency", "achieved_rate")),
    }
    med = {k: (v["median"] if v else None) for k, v in throughput.items()}
    ratios: dict[str, float] = {}
    for gateway in ("gateway_x1", "gateway_x2"):
        for limit in ("mosquitto_sub_receive", "kcat_produce", "loadgen_alone"):
            if med[gateway] and med[limit]:
                ratios[f"{gateway}/{limit}"] = round(med[gateway] / med[limit], 3)  # type: ignore[operator]
    if med["gateway_x1"] and med["gateway_x2"]:
        ratios["gateway_x2/gateway_x1"] = round(med["gateway_x2"] / med["gateway_x1"], 2)
    e2e_p99 = raw("latency", "end_to_end", "p99_ms")
    gw_p99 = values("latency", "gateway_histogram", "p99_ms")
    e2e_met = bool(e2e_p99) and all(v is not None and v <= TARGET_P99_MS for v in e2e_p99)
    return {
        "throughput_msg_s": throughput,
        "gateway_cpu_us_per_msg": {
            "x1": _stats(values("gateway_x1", "gateway_cpu_us_per_msg")),
            "x2": _stats(values("gateway_x2", "gateway_cpu_us_per_msg")),
        },
        "cpu_pct_of_one_core": {
            "gateways_in_x1": _stats(values("gateway_x1", "cpu_pct", "gateway0")),
            "gateways_in_x2": _stats(
                [
                    sum(v for k, v in run["cpu_pct"].items() if k.startswith("gateway") and v)
                    for run in phases.get("gateway_x2", [])
                ]
            ),
            "other_during_x1": _stats(values("gateway_x1", "cpu_pct", "other")),
            "other_during_x2": _stats(values("gateway_x2", "cpu_pct", "other")),
        },
        "msgs_per_gateway_cpu_second": {
            "x1": _stats(values("gateway_x1", "msgs_per_gateway_cpu_second")),
            "x2": _stats(values("gateway_x2", "msgs_per_gateway_cpu_second")),
        },
        "latency_ms_at_offered_rate": latency,
        "ratios": ratios,
        "targets": {
            "per_process_msg_s": {
                "target": TARGET_PER_PROCESS,
                "measured_median": med["gateway_x1"],
                "met": bool(med["gateway_x1"] and med["gateway_x1"] >= TARGET_PER_PROCESS),
            },
            "two_process_scaling": {
                "target": TARGET_SCALING,
                "measured": ratios.get("gateway_x2/gateway_x1"),
                "met": ratios.get("gateway_x2/gateway_x1", 0.0) >= TARGET_SCALING,
            },
            "p99_ms_at_5k": {
                "target": TARGET_P99_MS,
                "gateway_histogram_worst": max(gw_p99) if gw_p99 else None,
                "end_to_end_values": e2e_p99,
                "met_by_gateway_histogram": bool(gw_p99) and max(gw_p99) <= TARGET_P99_MS,
                "met_end_to_end": e2e_met,
            },
        },
    }


def print_summary(summary: dict[str, Any]) -> None:
    print("\nthroughput msg/s: median [min..max] over repeats")
    for name, value in summary["throughput_msg_s"].items():
        if value:
            low, high = value["min"], value["max"]
            print(f"  {name:28} {value['median']:>10,.0f}  [{low:,.0f}..{high:,.0f}]")
    for name, value in summary["gateway_cpu_us_per_msg"].items():
        if value:
            print(f"  gateway {name} CPU per message: {value['median']} us {value['values']}")
    print("latency at the fixed offered rate, ms (None: beyond the wait, see missing):")
    for name, value in summary["latency_ms_at_offered_rate"].items():
        if value:
            print(f"  {name:32} {value['median']!s:>10}  {value['values']}")
    print("ratios:", json.dumps(summary["ratios"]))
    print("targets:", json.dumps(summary["targets"]))


# ---------------------------------------------------------------------------- charts


def charts(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Writes the PNG charts; returns their file names."""
    import matplotlib  # noqa: PLC0415 - plotting is only needed here

    matplotlib.use("Agg")
    written = [
        _throughput_chart(results, out_dir / "gateway_ingest_throughput.png"),
        _timeline_chart(results, out_dir / "gateway_ingest_timeline.png"),
    ]
    if results["phases"].get("latency"):
        written.append(_latency_chart(results, out_dir / "gateway_ingest_latency.png"))
    return written


def _throughput_chart(results: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    rows = [(_LABELS[k], v) for k, v in results["summary"]["throughput_msg_s"].items() if v][::-1]
    fig, ax = plt.subplots(figsize=(10, 4.8))
    names = [name for name, _ in rows]
    medians = [v["median"] for _, v in rows]
    errors = [[v["median"] - v["min"] for _, v in rows], [v["max"] - v["median"] for _, v in rows]]
    colors = ["tab:green" if n.startswith("gateway") else "tab:gray" for n in names]
    bars = ax.barh(names, medians, xerr=errors, color=colors, capsize=4)
    ax.bar_label(bars, labels=[f"{m:,.0f}" for m in medians], padding=8, fontsize=8)
    ax.axvline(TARGET_PER_PROCESS, color="red", ls="--", label="target: 20,000 msg/s per process")
    ax.axvline(
        TARGET_PER_PROCESS * TARGET_SCALING, color="darkred", ls=":", label="target x2: 1.7 x 20k"
    )
    ax.set_xscale("log")
    ax.set_xlabel("msg/s (log scale; median of repeats, whiskers min..max)")
    ax.set_title("Gateway ingest (QoS 1 in, acks=all out) and its raw limits, same run")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _timeline_chart(results: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, color in (("gateway_x1", "tab:blue"), ("gateway_x2", "tab:orange")):
        for index, run in enumerate(results["phases"].get(name, [])):
            ax.plot(
                [p["t"] for p in run["timeline"]],
                [p["rate"] for p in run["timeline"]],
                color=color,
                alpha=0.8,
                lw=1,
                label=name.replace("_", " ") if index == 0 else None,
            )
            ax.axvline(run["warmup_s"], color="gray", lw=0.5, ls=":")
    ax.axhline(TARGET_PER_PROCESS, color="red", ls="--", label="target per process")
    ax.set_xlabel("seconds since the gateways were ready (dotted: end of warm-up)")
    ax.set_ylabel("records acked by Kafka per second")
    ax.set_title("Saturated gateways over time, every repeat (0.25 s samples)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _latency_chart(results: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(10, 4.5))
    for index, run in enumerate(results["phases"]["latency"]):
        e2e = run["end_to_end"]
        arrived = e2e["samples"] / max(1, e2e["samples"] + e2e["missing"])
        if run["end_to_end_cdf"]:
            ax.plot(
                [x for x, _ in run["end_to_end_cdf"]],
                [y * arrived for _, y in run["end_to_end_cdf"]],
                lw=1.2,
                label=f"end to end, repeat {index + 1}: p99 {e2e['p99_ms']} ms, "
                f"{e2e['missing']} late/missing",
            )
        p99 = run["gateway_histogram"]["p99_ms"]
        if p99 is not None:
            ax.plot([p99], [0.99], "k^", ms=6, label="gateway histogram p99" if not index else None)
    ax.axvline(TARGET_P99_MS, color="red", ls="--", label="target: p99 50 ms")
    ax.axhline(0.99, color="gray", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale)")
    ax.set_ylabel("fraction of records sent in the window")
    rate = results["settings"]["latency_rate"]
    ax.set_title(f"Publish -> Kafka latency at {rate:,.0f} msg/s offered, one gateway")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name
