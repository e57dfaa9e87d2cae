"""The soak's verdict, summary table and chart, from its samples (no services needed).

After the warm-up, each series is averaged over one pruning period (``smooth_s``, 60 s: the
worker deletes expired outbox rows and dedupe records once a minute and 1-minute windows
expire each minute, so raw row counts are a saw-tooth whose phase would tilt a fitted line),
and a least-squares line is fitted to the averaged store size on disk and to each process's
RSS. A series is *flat* when its fitted growth over 10 minutes is under ``tolerance_pct`` of
its post-warm-up mean (shrinking counts as flat). The run *kept up* when
the devices got their PUBACKs at (nearly) the offered rate and the worker's lag after the
warm-up never exceeded ``lag_bound_s`` seconds of that rate. Row counts are fitted the same
way and reported (a growing table is named), but only the bytes and the RSS decide.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TABLES = ("devices", "windows", "alert_states", "recent_events", "outbox", "tracking")
"""The store's tables counted at every sample."""
PROCESSES = ("worker", "gateway")
"""The processes whose RSS is judged."""
RATE_SHARE = 0.95
"""Below this share of the offered rate, the gateway did not keep up."""
MB = 1024 * 1024
"""Sizes are printed and drawn in MiB."""


@dataclass(frozen=True, slots=True)
class Criteria:
    """What flat and kept-up mean for one run."""

    warmup_s: float
    tolerance_pct: float
    """Largest fitted growth per 10 minutes, in % of the post-warm-up mean."""
    rate: float
    lag_bound_s: float
    smooth_s: float = 60.0
    """Each series is averaged over this trailing span before the fit."""


@dataclass(frozen=True, slots=True)
class Trend:
    """A least-squares line through a series after the warm-up."""

    samples: int
    mean: float
    first: float
    last: float
    slope_per_s: float
    intercept: float
    """At t = 0 s of the run (the line is drawn with it)."""
    per_hour: float
    pct_per_10min: float
    flat: bool


def fit(points: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line through ``points`` (at least two)."""
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    if spread == 0:
        return 0.0, mean_v
    slope = sum((t - mean_t) * (v - mean_v) for t, v in points) / spread
    return slope, mean_v - slope * mean_t


def trend(points: Sequence[tuple[float, float]], tolerance_pct: float) -> Trend | None:
    """The series' line and whether it is flat; None with fewer than three points."""
    if len(points) < 3:
        return None
    slope, intercept = fit(points)
    mean = sum(v for _, v in points) / len(points)
    pct = 100 * slope * 600 / mean if mean > 0 else 0.0
    return Trend(
        samples=len(points),
        mean=round(mean, 1),
        first=points[0][1],
        last=points[-1][1],
        slope_per_s=slope,
        intercept=intercept,
        per_hour=round(slope * 3600, 1),
        pct_per_10min=round(pct, 3),
        flat=pct < tolerance_pct,
    )


def smooth(points: Sequence[tuple[float, float]], span_s: float) -> list[tuple[float, float]]:
    """The trailing mean over ``span_s`` at each point that has a whole span behind it."""
    out = []
    for index, (t, _) in enumerate(points):
        if t - points[0][0] < span_s - 1e-6:
            continue
        window = [v for u, v in points[: index + 1] if u > t - span_s + 1e-6]
        out.append((t, sum(window) / len(window)))
    return out


def _series(samples: Sequence[dict[str, Any]], *path: str) -> list[tuple[float, float]]:
    points = []
    for sample in samples:
        value: Any = sample
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float):
            points.append((float(sample["t"]), float(value)))
    return points


def judge(samples: Sequence[dict[str, Any]], criteria: Criteria) -> dict[str, Any]:
    """The verdict over the samples taken while the load ran (``phase == "load"``)."""
    load = [s for s in samples if s["phase"] == "load"]
    after = [s for s in load if s["t"] >= criteria.warmup_s]

    def judged(*path: str) -> Trend | None:
        return trend(smooth(_series(after, *path), criteria.smooth_s), criteria.tolerance_pct)

    store = judged("store", "bytes")
    rss = {name: judged("rss", name) for name in PROCESSES}
    rows = {table: judged("rows", table) for table in TABLES}
    offered_s = load[-1]["t"] - load[0]["t"] if len(load) > 1 else 0.0
    achieved = (load[-1]["acked"] - load[0]["acked"]) / offered_s if offered_s else 0.0
    lags = [s["lag"] for s in after if s.get("lag") is not None]
    lag_bound = criteria.rate * criteria.lag_bound_s
    kept_up = bool(lags) and achieved >= RATE_SHARE * criteria.rate and max(lags) <= lag_bound
    flat = all(t is not None and t.flat for t in [store, *rss.values()])
    return {
        "ok": flat and kept_up,
        "flat": flat,
        "kept_up": kept_up,
        "samples_after_warmup": len(after),
        "achieved_rate": round(achieved, 1),
        "rate_share_needed": RATE_SHARE,
        "lag_max_after_warmup": max(lags) if lags else None,
        "lag_bound": round(lag_bound),
        "store_bytes": _trend_json(store),
        "rss_bytes": {name: _trend_json(t) for name, t in rss.items()},
        "rows": {table: _trend_json(t) for table, t in rows.items()},
        "growing_tables": sorted(
            table for table, t in rows.items() if t is not None and t.mean > 0 and not t.flat
        ),
    }


def _trend_json(value: Trend | None) -> dict[str, Any] | None:
    return None if value is None else asdict(value)


def at(samples: Sequence[dict[str, Any]], t: float) -> dict[str, Any] | None:
    """The first load sample at or after ``t`` seconds (the last one if none)."""
    load = [s for s in samples if s["phase"] == "load"]
    return next((s for s in load if s["t"] >= t), load[-1] if load else None)


def summary(report: dict[str, Any]) -> str:
    """The table printed at the end of a run."""
    verdict, samples = report["verdict"], report["samples"]
    warm, end = at(samples, report["criteria"]["warmup_s"]), at(samples, float("inf"))
    lines = [
        f"{'series':<22}{'warm-up end':>14}{'end':>14}{'per hour':>14}{'%/10 min':>10}  flat",
    ]

    def row(name: str, path: tuple[str, ...], value: dict[str, Any] | None, scale: float) -> None:
        def pick(sample: dict[str, Any] | None) -> str:
            got: Any = sample
            for key in path:
                got = got.get(key) if isinstance(got, dict) else None
            if got is None:
                return "-"
            return f"{got / scale:,.1f}" if scale != 1 else f"{got:,.0f}"

        if value is None:
            lines.append(f"{name:<22}{pick(warm):>14}{pick(end):>14}{'(too few samples)':>24}")
            return
        lines.append(
            f"{name:<22}{pick(warm):>14}{pick(end):>14}{value['per_hour'] / scale:>14,.1f}"
            f"{value['pct_per_10min']:>10.2f}  {'yes' if value['flat'] else 'NO'}"
        )

    row("store MiB", ("store", "bytes"), verdict["store_bytes"], MB)
    for name in PROCESSES:
        row(f"{name} RSS MiB", ("rss", name), verdict["rss_bytes"][name], MB)
    for table in TABLES:
        row(f"rows {table}", ("rows", table), verdict["rows"][table], 1)
    criteria = report["criteria"]
    lines += [
        f"rate: {verdict['achieved_rate']:,.0f} msg/s acknowledged of {criteria['rate']:,.0f} "
        f"offered; worker lag after the warm-up at most {verdict['lag_max_after_warmup']} "
        f"records (bound {verdict['lag_bound']:,})",
        f"flat (< {criteria['tolerance_pct']:g}% of the mean per 10 min after a "
        f"{criteria['warmup_s']:.0f} s warm-up): {'yes' if verdict['flat'] else 'NO'}; "
        f"kept up: {'yes' if verdict['kept_up'] else 'NO'}",
    ]
    if verdict["growing_tables"]:
        lines.append(f"tables still growing after the warm-up: {verdict['growing_tables']}")
    return "\n".join(lines)


def chart(report: dict[str, Any], path: Path) -> None:
    """Store size, row counts, RSS and load over time, the warm-up shaded, fitted lines."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    samples = [s for s in report["samples"] if s["phase"] == "load"]
    verdict, warmup = report["verdict"], report["criteria"]["warmup_s"]
    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(2, 2, figsize=(13, 8), sharex=True)
    (size_ax, rows_ax), (rss_ax, load_ax) = axes

    def fitted(ax: Any, line: dict[str, Any] | None, scale: float, color: str) -> None:
        if line is None:
            return
        ends = [warmup, samples[-1]["t"]]
        values = [(line["intercept"] + line["slope_per_s"] * t) / scale for t in ends]
        ax.plot([t / 60 for t in ends], values, "--", color=color, linewidth=1)

    store = [s["store"]["bytes"] / MB for s in samples]
    live = [(s["store"].get("live_bytes") or 0) / MB for s in samples]
    size_ax.plot(minutes, store, label="on disk", color="#3b7dd8")
    if any(live):
        size_ax.plot(minutes, live, label="live pages", color="#999999")
    fitted(size_ax, verdict["store_bytes"], MB, "#c92a2a")
    size_ax.set_ylabel("MiB")
    size_ax.set_title(f"store ({report['config']['store']})")
    size_ax.legend(loc="lower right")
    for table in TABLES:
        rows_ax.plot(minutes, [s["rows"].get(table) or 0 for s in samples], label=table)
    rows_ax.set_yscale("symlog")
    rows_ax.set_title("rows per table")
    rows_ax.legend(loc="lower right", fontsize=8)
    for name, color in zip(PROCESSES, ("#2f9e44", "#e8590c"), strict=True):
        rss_ax.plot(minutes, [s["rss"][name] / MB for s in samples], label=name, color=color)
        fitted(rss_ax, verdict["rss_bytes"][name], MB, color)
    rss_ax.set_ylabel("MiB")
    rss_ax.set_title("RSS")
    rss_ax.legend(loc="lower right")
    rate = [
        (b["acked"] - a["acked"]) / (b["t"] - a["t"]) if b["t"] > a["t"] else 0.0
        for a, b in itertools.pairwise(samples)
    ]
    load_ax.plot(minutes[1:], rate, label="PUBACKs/s", color="#3b7dd8")
    load_ax.set_ylabel("msg/s")
    load_ax.set_title("load and worker lag")
    lag_ax = load_ax.twinx()
    lag_ax.plot(minutes, [s.get("lag") or 0 for s in samples], color="#c92a2a", label="lag")
    lag_ax.set_ylabel("lag (records)", color="#c92a2a")
    for ax in axes.flat:
        ax.axvspan(0, warmup / 60, color="#dddddd", alpha=0.6, linewidth=0)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("minutes (warm-up shaded)")
    word = "flat" if verdict["flat"] else "NOT flat"
    fig.suptitle(
        f"soak: {report['config']['rate']:,.0f} msg/s for {report['config']['duration_s']:.0f} s, "
        f"{word}, {'kept up' if verdict['kept_up'] else 'did NOT keep up'}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
