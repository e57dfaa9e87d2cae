"""Numbers and charts of the gateway ingest benchmark (see ``bench/gateway_ingest.py``).

Pure functions of the samples the benchmark collected: rates of counters over a window,
quantiles, the Prometheus-style histogram quantile, the summary with ratios and targets, and
the PNG charts.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

TARGET_PER_PROCESS = 20_000.0
TARGET_SCALING = 1.7
TARGET_P99_MS = 50.0
TARGET_DIRECT_PER_PROCESS = 25_000.0
"""Direct mode: QoS 1 msg/s per gateway process (Kafka-acknowledged, then PUBACKed)."""
TARGET_DIRECT_CPU_US = 35.0
"""Direct mode: gateway CPU per message."""
TARGET_DIRECT_P99_MS = 20.0
"""Direct mode: publish -> PUBACK p99 at 5,000 msg/s (the PUBACK follows the Kafka ack)."""

_LABELS = {
    "loadgen_alone": "loadgen -> broker (nothing subscribed)",
    "loadgen_with_mosquitto_sub": "loadgen -> broker (mosquitto_sub subscribed)",
    "mosquitto_sub_receive": "broker -> C mosquitto_sub, QoS 1 (raw MQTT limit)",
    "kcat_produce": "kcat -P idempotent, acks=all (raw Kafka limit)",
    "gateway_x1": "bridge x1 (Kafka-acked)",
    "gateway_x2": "bridge x2 (Kafka-acked)",
    "direct_x1": "direct x1 (Kafka-acked, then PUBACK)",
    "direct_x1_uvloop": "direct x1 on uvloop",
    "direct_x2": "direct x2, one port (SO_REUSEPORT)",
    "direct_x2_uvloop": "direct x2 on uvloop",
}
_COLORS = {"gateway": "tab:green", "direct": "tab:blue", "uvloop": "tab:purple"}
UVLOOP_PAIRS: dict[str, tuple[str, tuple[str, ...]]] = {
    "x1_msg_s": ("direct_x1", ("rate",)),
    "x2_msg_s": ("direct_x2", ("rate",)),
    "x1_cpu_us_per_msg": ("direct_x1", ("gateway_cpu_us_per_msg",)),
    "x2_cpu_us_per_msg": ("direct_x2", ("gateway_cpu_us_per_msg",)),
    "puback_p50_ms_at_5k": ("direct_latency", ("puback", "p50_ms")),
    "puback_p99_ms_at_5k": ("direct_latency", ("puback", "p99_ms")),
    "cpu_us_per_msg_at_5k": ("direct_latency", ("gateway_cpu_us_per_msg",)),
    "connections_per_s": ("direct_connect", ("rate",)),
    "connack_p50_ms": ("direct_connect", ("connack_ms", "p50")),
    "cpu_us_per_connection": ("direct_connect", ("gateway_cpu_us_per_connection",)),
}
"""uvloop vs asyncio: figure -> (asyncio phase, path to the value); the uvloop phase is the
same name with ``_uvloop``."""


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
        "direct_x1": _stats(values("direct_x1", "rate")),
        "direct_x1_uvloop": _stats(values("direct_x1_uvloop", "rate")),
        "direct_x2": _stats(values("direct_x2", "rate")),
        "direct_x2_uvloop": _stats(values("direct_x2_uvloop", "rate")),
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
        "direct_puback_p50": _late_stats(raw("direct_latency", "puback", "p50_ms")),
        "direct_puback_p99": _late_stats(raw("direct_latency", "puback", "p99_ms")),
        "direct_puback_max": _late_stats(raw("direct_latency", "puback", "max_ms")),
        "direct_puback_never_acknowledged": _stats(values("direct_latency", "puback", "missing")),
        "direct_gateway_histogram_p99": _stats(
            values("direct_latency", "gateway_histogram", "p99_ms")
        ),
        "direct_achieved_rate": _stats(values("direct_latency", "achieved_rate")),
        "direct_uvloop_puback_p50": _late_stats(raw("direct_latency_uvloop", "puback", "p50_ms")),
        "direct_uvloop_puback_p99": _late_stats(raw("direct_latency_uvloop", "puback", "p99_ms")),
        "direct_uvloop_puback_max": _late_stats(raw("direct_latency_uvloop", "puback", "max_ms")),
        "direct_uvloop_puback_never_acknowledged": _stats(
            values("direct_latency_uvloop", "puback", "missing")
        ),
        "direct_uvloop_gateway_histogram_p99": _stats(
            values("direct_latency_uvloop", "gateway_histogram", "p99_ms")
        ),
        "direct_uvloop_achieved_rate": _stats(values("direct_latency_uvloop", "achieved_rate")),
    }
    med = {k: (v["median"] if v else None) for k, v in throughput.items()}
    ratios: dict[str, float] = {}
    for gateway in ("gateway_x1", "gateway_x2"):
        for limit in ("mosquitto_sub_receive", "kcat_produce", "loadgen_alone"):
            if med[gateway] and med[limit]:
                ratios[f"{gateway}/{limit}"] = round(med[gateway] / med[limit], 3)  # type: ignore[operator]
    for limit in ("kcat_produce", "loadgen_alone", "gateway_x1"):
        if med["direct_x1"] and med[limit]:
            ratios[f"direct_x1/{limit}"] = round(med["direct_x1"] / med[limit], 3)
    for mode in ("gateway", "direct"):
        one, two = med[f"{mode}_x1"], med[f"{mode}_x2"]
        if one and two:
            ratios[f"{mode}_x2/{mode}_x1"] = round(two / one, 2)
    for name in ("direct_x1", "direct_x2"):
        uv, base = med[f"{name}_uvloop"], med[name]
        if uv and base:
            ratios[f"{name}_uvloop/{name}"] = round(uv / base, 3)
    one, two = med["direct_x1_uvloop"], med["direct_x2_uvloop"]
    if one and two:
        ratios["direct_x2_uvloop/direct_x1_uvloop"] = round(two / one, 2)
    e2e_p99 = raw("latency", "end_to_end", "p99_ms")
    gw_p99 = values("latency", "gateway_histogram", "p99_ms")
    e2e_met = bool(e2e_p99) and all(v is not None and v <= TARGET_P99_MS for v in e2e_p99)
    direct_p99 = raw("direct_latency", "puback", "p99_ms")
    direct_cpu = _stats(values("direct_x1", "gateway_cpu_us_per_msg"))
    return {
        "throughput_msg_s": throughput,
        "gateway_cpu_us_per_msg": {
            "x1": _stats(values("gateway_x1", "gateway_cpu_us_per_msg")),
            "x2": _stats(values("gateway_x2", "gateway_cpu_us_per_msg")),
            "direct_x1": direct_cpu,
            "direct_x2": _stats(values("direct_x2", "gateway_cpu_us_per_msg")),
            "direct_at_latency_rate": _stats(values("direct_latency", "gateway_cpu_us_per_msg")),
            "direct_x1_uvloop": _stats(values("direct_x1_uvloop", "gateway_cpu_us_per_msg")),
            "direct_x2_uvloop": _stats(values("direct_x2_uvloop", "gateway_cpu_us_per_msg")),
            "direct_at_latency_rate_uvloop": _stats(
                values("direct_latency_uvloop", "gateway_cpu_us_per_msg")
            ),
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
            "gateways_in_direct_x1": _stats(values("direct_x1", "cpu_pct", "gateway0")),
            "gateways_in_direct_x2": _stats(
                [
                    sum(v for k, v in run["cpu_pct"].items() if k.startswith("gateway") and v)
                    for run in phases.get("direct_x2", [])
                ]
            ),
            "loadgen_in_direct_x1": _stats(values("direct_x1", "cpu_pct", "loadgen")),
            "kafka_in_direct_x1": _stats(values("direct_x1", "cpu_pct", "kafka")),
            "other_during_direct_x1": _stats(values("direct_x1", "cpu_pct", "other")),
            "gateways_in_direct_x1_uvloop": _stats(
                values("direct_x1_uvloop", "cpu_pct", "gateway0")
            ),
            "other_during_direct_x1_uvloop": _stats(values("direct_x1_uvloop", "cpu_pct", "other")),
        },
        "msgs_per_gateway_cpu_second": {
            "x1": _stats(values("gateway_x1", "msgs_per_gateway_cpu_second")),
            "x2": _stats(values("gateway_x2", "msgs_per_gateway_cpu_second")),
        },
        "latency_ms_at_offered_rate": latency,
        "direct_connect": _connect_stats(values, "direct_connect"),
        "direct_connect_uvloop": _connect_stats(values, "direct_connect_uvloop"),
        "uvloop_vs_asyncio": _uvloop_vs_asyncio(raw),
        "stalls_while_serving": {
            name: _stall_counts(phases.get(name, []))
            for name in PHASE_ORDER_DIRECT
            if phases.get(name)
        },
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
            "direct_per_process_msg_s": {
                "target": TARGET_DIRECT_PER_PROCESS,
                "measured_median": med["direct_x1"],
                "met": bool(med["direct_x1"] and med["direct_x1"] >= TARGET_DIRECT_PER_PROCESS),
            },
            "direct_cpu_us_per_msg": {
                "target": TARGET_DIRECT_CPU_US,
                "measured_median": direct_cpu["median"] if direct_cpu else None,
                "met": bool(direct_cpu and direct_cpu["median"] <= TARGET_DIRECT_CPU_US),
            },
            "direct_p99_puback_ms_at_5k": {
                "target": TARGET_DIRECT_P99_MS,
                "values": direct_p99,
                "met": bool(direct_p99)
                and all(v is not None and v <= TARGET_DIRECT_P99_MS for v in direct_p99),
            },
        },
    }


PHASE_ORDER_DIRECT = (
    "direct_x1", "direct_x1_uvloop", "direct_x2", "direct_x2_uvloop", "direct_latency",
    "direct_latency_uvloop", "direct_connect", "direct_connect_uvloop",
)  # fmt: skip


def _connect_stats(values: Any, name: str) -> dict[str, Any]:
    return {
        "connections_per_s": _stats(values(name, "rate")),
        "connack_p50_ms": _stats(values(name, "connack_ms", "p50")),
        "connack_p99_ms": _stats(values(name, "connack_ms", "p99")),
        "gateway_cpu_us_per_connection": _stats(values(name, "gateway_cpu_us_per_connection")),
        "sessions_topic_records_per_connection": _stats(
            [
                float(records) / float(connected)
                for records, connected in zip(
                    values(name, "sessions_topic_records"), values(name, "connected"), strict=False
                )
                if connected
            ]
        ),
        "failed": _stats(values(name, "failed")),
    }


def _uvloop_vs_asyncio(raw: Any) -> dict[str, Any]:
    """For each figure of ``UVLOOP_PAIRS``: uvloop / asyncio per repeat (the two ran side by
    side), their median, and both medians. Above 1 is better for rates, worse for CPU and
    latency."""
    found: dict[str, Any] = {}
    for figure, (phase, path) in UVLOOP_PAIRS.items():
        base, uv = raw(phase, *path), raw(f"{phase}_uvloop", *path)
        pairs = [
            round(u / b, 3)
            for b, u in zip(base, uv, strict=False)
            if isinstance(b, int | float) and isinstance(u, int | float) and b
        ]
        if not pairs:
            continue
        numbers = [float(v) for v in base if isinstance(v, int | float)]
        uv_numbers = [float(v) for v in uv if isinstance(v, int | float)]
        found[figure] = {
            "asyncio_median": round(statistics.median(numbers), 2),
            "uvloop_median": round(statistics.median(uv_numbers), 2),
            "ratio_median": round(statistics.median(pairs), 3),
            "ratios": pairs,
        }
    return found


def _stall_counts(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How many "did not run for N s" stalls each repeat's gateways logged while serving, and
    the longest."""
    stalls = [run.get("stalls_serving_s", []) for run in runs]
    return {
        "count_per_repeat": [len(found) for found in stalls],
        "longest_s": max((s for found in stalls for s in found), default=None),
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
    for phase in ("direct_connect", "direct_connect_uvloop"):
        for name, value in summary.get(phase, {}).items():
            if value:
                print(f"  {phase} {name}: {value['median']} {value['values']}")
    print("latency at the fixed offered rate, ms (None: beyond the wait, see missing):")
    for name, value in summary["latency_ms_at_offered_rate"].items():
        if value:
            print(f"  {name:32} {value['median']!s:>10}  {value['values']}")
    print("ratios:", json.dumps(summary["ratios"]))
    print("uvloop / asyncio (median of per-repeat ratios):")
    for name, value in summary.get("uvloop_vs_asyncio", {}).items():
        print(
            f"  {name:24} asyncio {value['asyncio_median']:>10,}  uvloop "
            f"{value['uvloop_median']:>10,}  x{value['ratio_median']} {value['ratios']}"
        )
    print("stalls while serving:", json.dumps(summary.get("stalls_while_serving", {})))
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
    if any(
        results["phases"].get(p) for p in ("latency", "direct_latency", "direct_latency_uvloop")
    ):
        written.append(_latency_chart(results, out_dir / "gateway_ingest_latency.png"))
    return written


def _color(name: str) -> str:
    if name.endswith("_uvloop"):
        return _COLORS["uvloop"]
    return _COLORS.get(name.split("_", 1)[0], "tab:gray")


def _throughput_chart(results: dict[str, Any], path: Path) -> str:
    """Throughput of the raw limits, bridge and direct mode (left, log scale) and the
    gateways' CPU per message (right), medians of the repeats with min..max whiskers."""
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import NullFormatter  # noqa: PLC0415

    summary = results["summary"]
    fig, (ax, cpu_ax) = plt.subplots(
        1, 2, figsize=(14, 5.2), gridspec_kw={"width_ratios": [1.6, 1]}
    )
    rows = [(k, v) for k, v in summary["throughput_msg_s"].items() if v][::-1]
    _bars(ax, rows, lambda v: f"{v:,.0f}")
    targets = (
        (TARGET_PER_PROCESS, "tab:green", "--", "bridge target 20k/process"),
        (TARGET_PER_PROCESS * TARGET_SCALING, "tab:green", ":", "bridge x2: 1.7 x 20k"),
        (TARGET_DIRECT_PER_PROCESS, "tab:blue", "--", "direct target 25k/process"),
    )
    for value, color, style, label in targets:
        ax.axvline(value, color=color, ls=style, lw=1, label=label)
    ax.set_xscale("log")
    if rows:  # from a power of ten, and only the decades labelled: minor labels collide
        lowest = min(v["min"] for _, v in rows)
        ax.set_xlim(left=10 ** math.floor(math.log10(max(lowest, 1.0))))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("msg/s (log scale; median of repeats, whiskers min..max)")
    ax.set_title(
        "Throughput: direct (asyncio, uvloop) vs bridge vs raw limits, same run", fontsize=10
    )
    ax.legend(loc="lower right", fontsize=7)
    cpu = summary["gateway_cpu_us_per_msg"]
    cpu_rows = [
        (name, cpu.get(key))
        for name, key in (
            ("gateway_x2", "x2"),
            ("gateway_x1", "x1"),
            ("direct_x2_uvloop", "direct_x2_uvloop"),
            ("direct_x2", "direct_x2"),
            ("direct_x1_uvloop", "direct_x1_uvloop"),
            ("direct_x1", "direct_x1"),
        )
        if cpu.get(key)
    ]
    _bars(cpu_ax, cpu_rows, lambda v: f"{v:.1f} us")
    cpu_ax.axvline(
        TARGET_DIRECT_CPU_US, color="tab:blue", ls="--", lw=1, label="direct target 35 us"
    )
    cpu_ax.set_xlabel("gateway CPU us per Kafka-acked message (saturated)")
    cpu_ax.set_title("Gateway CPU per message", fontsize=10)
    cpu_ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name


def _bars(ax: Any, rows: list[tuple[str, Any]], label: Any) -> None:
    """Horizontal bars of ``_stats`` medians with min..max whiskers, colored by mode."""
    medians = [v["median"] for _, v in rows]
    errors = [[v["median"] - v["min"] for _, v in rows], [v["max"] - v["median"] for _, v in rows]]
    bars = ax.barh(
        [_LABELS[k] for k, _ in rows],
        medians,
        xerr=errors,
        color=[_color(k) for k, _ in rows],
        capsize=4,
    )
    ax.bar_label(bars, labels=[label(m) for m in medians], padding=8, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)


def _timeline_chart(results: dict[str, Any], path: Path) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(10, 4.5))
    lines = (
        ("gateway_x1", "tab:green", "-"),
        ("gateway_x2", "tab:green", ":"),
        ("direct_x1", "tab:blue", "-"),
        ("direct_x2", "tab:blue", ":"),
        ("direct_x1_uvloop", "tab:purple", "-"),
        ("direct_x2_uvloop", "tab:purple", ":"),
    )
    for name, color, style in lines:
        for index, run in enumerate(results["phases"].get(name, [])):
            ax.plot(
                [p["t"] for p in run["timeline"]],
                [p["rate"] for p in run["timeline"]],
                color=color,
                ls=style,
                alpha=0.8,
                lw=1,
                label=_LABELS[name] if index == 0 else None,
            )
            ax.axvline(run["warmup_s"], color="gray", lw=0.5, ls=":")
    ax.axhline(TARGET_PER_PROCESS, color="tab:green", ls="--", lw=0.8, label="bridge target")
    ax.axhline(TARGET_DIRECT_PER_PROCESS, color="tab:blue", ls="--", lw=0.8, label="direct target")
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

    fig, ax = plt.subplots(figsize=(10, 4.8))
    for index, run in enumerate(results["phases"].get("latency", [])):
        e2e = run["end_to_end"]
        arrived = e2e["samples"] / max(1, e2e["samples"] + e2e["missing"])
        if run["end_to_end_cdf"]:
            ax.plot(
                [x for x, _ in run["end_to_end_cdf"]],
                [y * arrived for _, y in run["end_to_end_cdf"]],
                color="tab:green",
                alpha=0.5 + 0.5 * (index == 0),
                lw=1.2,
                label=f"bridge, publish -> Kafka consumer, repeat {index + 1}: p99 "
                f"{e2e['p99_ms']} ms, {e2e['missing']} late/missing",
            )
        p99 = run["gateway_histogram"]["p99_ms"]
        if p99 is not None:
            ax.plot([p99], [0.99], "g^", ms=6, label="bridge histogram p99" if not index else None)
    direct = (
        ("direct_latency", "tab:blue", "direct"),
        ("direct_latency_uvloop", "tab:purple", "direct on uvloop"),
    )
    for phase, color, label in direct:
        for index, run in enumerate(results["phases"].get(phase, [])):
            puback = run["puback"]
            acked = puback["samples"] / max(1, puback["samples"] + puback["missing"])
            if run["puback_cdf"]:
                ax.plot(
                    [x for x, _ in run["puback_cdf"]],
                    [y * acked for _, y in run["puback_cdf"]],
                    color=color,
                    alpha=0.5 + 0.5 * (index == 0),
                    lw=1.2,
                    label=f"{label}, publish -> PUBACK (after the Kafka ack), repeat {index + 1}: "
                    f"p99 {puback['p99_ms']} ms, {puback['missing']} never acked",
                )
    ax.axvline(TARGET_P99_MS, color="tab:green", ls="--", label="bridge target: p99 50 ms")
    ax.axvline(TARGET_DIRECT_P99_MS, color="tab:blue", ls="--", label="direct target: p99 20 ms")
    ax.axhline(0.99, color="gray", lw=0.5)
    ax.set_xscale("log")
    ax.set_xlabel("ms (log scale)")
    ax.set_ylabel("fraction of messages sent in the window")
    rate = results["settings"]["latency_rate"]
    ax.set_title(f"Latency at {rate:,.0f} msg/s offered, one gateway process")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path.name
