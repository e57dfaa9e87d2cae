"""The run as a picture: acknowledged and applied readings per second, the faults marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.faults.availability import AppliedSample, FaultSpan


def _per_second(times: Sequence[float], start: float, seconds: int) -> list[int]:
    counts = [0] * seconds
    for at in times:
        second = int(at - start)
        if 0 <= second < seconds:
            counts[second] += 1
    return counts


def _applied_per_second(
    samples: Sequence[AppliedSample], start: float, seconds: int
) -> list[float]:
    rates = [0.0] * seconds
    previous: tuple[float, int] | None = None
    for at, positions in samples:
        total = sum(positions.values())
        if previous is not None and at > previous[0]:
            rate = (total - previous[1]) / (at - previous[0])
            for second in range(int(previous[0] - start), int(at - start) + 1):
                if 0 <= second < seconds:
                    rates[second] = rate
        previous = (at, total)
    return rates


def draw(
    path: Path,
    title: str,
    acked: Mapping[int, Sequence[float]],
    applied: Sequence[AppliedSample],
    faults: Sequence[FaultSpan],
    load_started: float,
    load_ended: float,
) -> Path:
    """Writes the chart to ``path`` (PNG): time since the load started on the x axis."""
    import matplotlib  # noqa: PLC0415 - only a run that draws needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    seconds = max(int(load_ended - load_started) + 1, 1)
    every = sorted(t for series in acked.values() for t in series)
    figure, axes = plt.subplots(figsize=(12, 4.5), dpi=100)
    axes.plot(range(seconds), _per_second(every, load_started, seconds), lw=1, label="acknowledged")
    axes.plot(
        range(seconds),
        _applied_per_second(applied, load_started, seconds),
        lw=1,
        alpha=0.8,
        label="applied",
    )
    top = axes.get_ylim()[1]
    for fault in faults:
        begin, end = fault.started - load_started, fault.repaired - load_started
        axes.axvspan(
            begin,
            max(end, begin + 0.3),
            color="tab:red" if fault.kafka_node else "tab:gray",
            alpha=0.2,
        )
        axes.text(begin, top * 0.98, fault.label, rotation=90, va="top", ha="right", fontsize=7)
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel("readings per second")
    axes.set_title(title)
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
