"""Where a profiled process spent its time: self time of a pyinstrument session, summed by
function, by file (libraries by package) and by pipeline stage.

pyinstrument's own text output is a call tree; to say "where the time goes" one needs the
self time (the innermost frame of each sample) summed up. A built-in function (``socket.send``,
``epoll.poll``) is named together with the Python function that called it and counted for that
caller's file, except ``epoll.poll``, the event loop waiting for I/O, which is its own area.
Shares are percent of the wall time of the event loop's ``run_forever`` (start-up imports and
exit excluded), or of the whole session when there is no event loop.
"""

from __future__ import annotations

import collections
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyinstrument.frame import Frame

WAITING = "waiting in epoll (idle, or for I/O)"
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "MQTT framing and packet codec",
        ("iot_gateway/edge/wire.py", "iot_gateway/edge/v5.py", "iot_gateway/edge/v311.py",
         "iot_gateway/edge/codec.py", "mqtt5"),
    ),
    (
        "connection, acknowledgement order, sessions",
        ("iot_gateway/edge/connection.py", "iot_gateway/acks.py", "iot_gateway/edge/sessions.py",
         "iot_gateway/edge/server.py"),
    ),
    (
        "sessions topic: claims, fold, freshness",
        ("iot_gateway/edge/session_log.py", "iot_gateway/edge/directory.py"),
    ),
    (
        "ingest: JSON parse, checks, Avro encode",
        ("iot_gateway/ingest.py", "iot_gateway/codecs.py", "iot_gateway/ratelimit.py",
         "contracts/", "json/", "fastavro", "policy/"),
    ),
    ("generated dataclass __init__ (records, results)", ("<string>",)),
    ("Kafka: sink batching and aiokafka", ("iot_gateway/sink.py", "aiokafka")),
    ("metrics (prometheus_client)", ("prometheus_client", "iot_gateway/metrics.py")),
    ("event loop and socket calls", ("asyncio/", "selectors.py", "socket.py")),
    ("waiting in epoll", (WAITING,)),
)  # fmt: skip
"""Pipeline stages of a direct-mode gateway, each a list of area prefixes."""

_STDLIB = sysconfig.get_paths()["stdlib"] + "/"


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Self-time shares (% of the loop's wall time), largest first."""

    by_function: list[tuple[str, float]]
    by_area: list[tuple[str, float]]
    by_stage: list[tuple[str, float]]
    cpu_share: float
    """CPU time / wall time of the whole session."""
    loop_seconds: float


def breakdown(session_file: Path, sources: tuple[Path, ...] = ()) -> Breakdown:
    """The self time of a saved pyinstrument session (see the module docstring). Files under
    ``sources`` (checkouts the process imported from) are named relative to them."""
    from pyinstrument.session import Session  # noqa: PLC0415 - only when profiling

    session = Session.load(str(session_file))
    root = session.root_frame()
    if root is not None:
        root = _find(root, "run_forever") or root
    prefixes = tuple(f"{source}/" for source in sources)
    by_area: dict[str, float] = collections.defaultdict(float)
    by_function: dict[str, float] = collections.defaultdict(float)
    total = root.time if root is not None else 0.0
    # (frame, file and function of the innermost Python frame above it)
    stack: list[tuple[Frame, str, str]] = [] if root is None else [(root, "", "")]
    while stack:
        frame, caller_file, caller_function = stack.pop()
        file = frame.file_path or ""
        python = file not in {"<built-in>", ""}
        if frame.is_synthetic_leaf:  # [self] (time in the parent itself), [await], ...
            name, area = _self_time(frame, caller_file, caller_function, prefixes)
            by_area[area] += frame.time
            by_function[name] += frame.time
            continue
        stack.extend(
            (child, file if python else caller_file, frame.function if python else caller_function)
            for child in frame.children
        )
    by_stage: dict[str, float] = collections.defaultdict(float)
    for area, seconds in by_area.items():
        by_stage[_stage(area)] += seconds

    def shares(counter: dict[str, float]) -> list[tuple[str, float]]:
        ordered = sorted(counter.items(), key=lambda kv: -kv[1])
        return [(k, round(100 * v / total, 1)) for k, v in ordered] if total else []

    return Breakdown(
        by_function=shares(by_function),
        by_area=shares(by_area),
        by_stage=shares(by_stage),
        cpu_share=session.cpu_time / session.duration if session.duration else 0.0,
        loop_seconds=round(total, 3),
    )


def cut(session_file: Path, start: float, end: float, out: Path) -> int:
    """Writes to ``out`` the samples of a saved session taken between the wall-clock times
    ``start`` and ``end`` (epoch s; samples are in time order, each with its duration), so
    that one stretch of a process's life can be broken down alone; returns how many. Its
    ``cpu_time`` is 0 (the session only has the whole run's): take CPU from ``/proc``."""
    from pyinstrument.session import Session  # noqa: PLC0415 - only when profiling

    session = Session.load(str(session_file))
    at = session.start_time
    kept = []
    for record in session.frame_records:
        if start <= at <= end:
            kept.append(record)
        at += record[1]
    part = Session(
        frame_records=kept,
        start_time=max(start, session.start_time),
        duration=sum(seconds for _, seconds in kept),
        min_interval=session.min_interval,
        max_interval=session.max_interval,
        sample_count=len(kept),
        start_call_stack=session.start_call_stack,
        target_description=session.target_description,
        cpu_time=0.0,
        sys_path=session.sys_path,
        sys_prefixes=session.sys_prefixes,
    )
    part.save(str(out))
    return len(kept)


def _find(frame: Frame, function: str) -> Frame | None:
    """The outermost frame calling ``function`` (depth first)."""
    stack = [frame]
    while stack:
        current = stack.pop()
        if current.function == function or current.function.endswith(f".{function}"):
            return current
        stack.extend(reversed(current.children))
    return None


def _self_time(
    frame: Frame, caller_file: str, caller_function: str, prefixes: tuple[str, ...]
) -> tuple[str, str]:
    """(function name, area) a synthetic leaf's time belongs to."""
    parent = frame.parent
    if frame.function != "[self]" or parent is None:
        return frame.function, frame.function
    parent_file = parent.file_path or ""
    if parent_file not in {"<built-in>", ""}:
        short = _short(parent_file, prefixes)
        return f"{parent.function}  ({short})", _area(parent_file, short)
    name = f"{caller_function} -> {parent.function}"
    if parent.function.endswith("poll") and "selectors" in caller_file:
        return f"{name}  (selectors.py)", WAITING
    short = _short(caller_file, prefixes)
    return f"{name}  ({short})", _area(caller_file, short)


def _short(path: str, prefixes: tuple[str, ...]) -> str:
    """A file's path from its package (``aiokafka/...``, ``iot_gateway/...``, ``asyncio/...``)."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1]
    for prefix in prefixes:
        if path.startswith(prefix):
            return path.removeprefix(prefix)
    return path.removeprefix(_STDLIB)


def _area(path: str, short: str) -> str:
    """Libraries by package; the project's modules and the standard library by file."""
    if "site-packages/" in path and not short.startswith("iot_gateway/"):
        return short.split("/", 1)[0]
    return short or "?"


def _stage(area: str) -> str:
    for stage, prefixes in STAGES:
        if area.startswith(prefixes):
            return stage
    return "other (start-up, HTTP, logging, ...)"


def lines(result: Breakdown, min_share: float = 0.5, functions: int = 30) -> list[str]:
    """The breakdown as text lines: stages, areas of at least ``min_share`` %, top functions."""
    small = sum(share for _, share in result.by_area if share < min_share)
    return [
        f"Self time by stage, % of the event loop's {result.loop_seconds:.1f} s wall time:",
        *(f"  {share:5.1f}%  {name}" for name, share in result.by_stage),
        "",
        "By file (libraries by package):",
        *(f"  {share:5.1f}%  {name}" for name, share in result.by_area if share >= min_share),
        f"  {small:5.1f}%  (files under {min_share}% each)",
        "",
        f"By function (top {functions}; 'a -> b': built-in b called by a):",
        *(f"  {share:5.1f}%  {name}" for name, share in result.by_function[:functions]),
    ]
