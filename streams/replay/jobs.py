"""Parallel rebuilds: partitions applied by several processes, merged into one shadow.

One process is CPU-bound (Avro decoding and the processor, both Python). A device's events
never leave its partition, so a partition's state depends on that partition's records only:
:func:`rebuild_parallel` splits the partitions between ``jobs`` processes (balanced by record
count), each applying its partitions with the workers' own :class:`BatchProcessor` (the
:func:`streams.replay.rebuild.rebuild` code path) into a temporary SQLite file of its
own, then merges those files into the shadow store in ONE transaction
(``SqliteStore.merge``: projections, inbox offsets and recent ids, outbox). The result is the
state, offsets and ``state_hash`` of
a single-process rebuild of the same offsets. If any process fails, the others are stopped,
nothing is merged and the error is raised.

Processes are started with ``spawn`` (never ``fork``: the caller runs an event loop and
threads), so each pays an interpreter start and the imports (~0.7 s) once.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any

from streams.errors import StoreError
from streams.layout import PartitionLayout
from streams.processor import processor_for
from streams.replay.rebuild import (
    Plan,
    Progress,
    RebuildReport,
    apply_in_order,
    plan,
    shadow_layout,
)
from streams.settings import WorkerSettings
from streams.store.sqlite import SqliteStore

__all__ = ["rebuild_parallel", "split"]


def split(chosen: Plan, jobs: int, layout: PartitionLayout | None = None) -> list[list[int]]:
    """The partitions with records to read, in at most ``jobs`` groups of about equal record
    counts (largest first onto the least loaded group); no empty groups. Partitions that may
    share a device under ``layout`` (after a repartition) stay in one group."""
    sizes = {p: chosen.end[p] - chosen.start[p] for p in chosen.start}
    units = layout.sharing() if layout is not None else [[p] for p in sizes]
    units = [[p for p in unit if sizes.get(p, 0) > 0] for unit in units]
    weight = {tuple(unit): sum(sizes[p] for p in unit) for unit in units if unit}
    groups: list[list[int]] = [[] for _ in range(max(1, jobs))]
    loads = [0] * len(groups)
    for unit in sorted(weight, key=lambda u: (-weight[u], u)):
        least = loads.index(min(loads))
        groups[least].extend(unit)
        loads[least] += weight[unit]
    return [sorted(group) for group in groups if group]


def _child(
    out: Connection,
    progress: Any,
    slot: int,
    settings: WorkerSettings,
    path: str,
    prefix: str,
    start: dict[int, int],
    end: dict[int, int],
    group: str | None,
    layout: str,
) -> None:
    """A rebuild process: applies ``start``..``end`` into its own file; sends the counts
    (or the exception) back through ``out``; ``progress[slot]`` counts its events."""

    def report(update: Progress) -> None:
        progress[slot] = update.events

    try:
        store = SqliteStore(path, prefix=prefix, synchronous="OFF")
        try:
            store.migrate()
            judged = PartitionLayout.from_json(layout)
            processor = processor_for(settings, store, group, judged)
            counts = asyncio.run(apply_in_order(settings, processor, judged, start, end, report))
        finally:
            store.close()
        out.send(("ok", counts))
    except BaseException as exc:  # every failure goes back to the parent
        out.send(("error", exc))
    finally:
        out.close()


async def rebuild_parallel(
    settings: WorkerSettings,
    shadow: SqliteStore,
    *,
    jobs: int,
    from_ms: int | None = None,
    to_ms: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    group: str | None = None,
    layout: PartitionLayout | None = None,
) -> RebuildReport:
    """:func:`streams.replay.rebuild.rebuild` into an SQLite ``shadow`` with ``jobs`` processes.

    The parts live in a temporary folder next to the shadow file (removed afterwards); the
    time reported covers starting the processes, applying and merging.
    """
    chosen = await plan(settings, from_ms, to_ms)
    layout = await shadow_layout(settings, shadow, layout)
    groups = split(chosen, min(jobs, shadow.merge_capacity), layout)  # one merge: every part
    started = time.monotonic()
    folder = Path(tempfile.mkdtemp(prefix=f"{shadow.path.name}.parts-", dir=shadow.path.parent))
    context = multiprocessing.get_context("spawn")
    counted = context.Array("q", len(groups), lock=False)
    children: list[tuple[SpawnProcess, Connection, Path]] = []
    try:
        for slot, partitions in enumerate(groups):
            receive, send = context.Pipe(duplex=False)
            path = folder / f"part-{slot}.db"
            child = context.Process(
                target=_child,
                args=(
                    send,
                    counted,
                    slot,
                    settings,
                    str(path),
                    shadow.prefix,
                    {p: chosen.start[p] for p in partitions},
                    {p: chosen.end[p] for p in partitions},
                    group,
                    layout.to_json(),
                ),
                name=f"replay-rebuild-{slot}",
                daemon=True,
            )
            child.start()
            send.close()
            children.append((child, receive, path))
        events, undecodable = await _collect(children, counted, chosen, started, progress)
        parts = [SqliteStore(path, prefix=shadow.prefix) for _, _, path in children]
        try:
            await asyncio.to_thread(shadow.merge, parts)
        finally:
            for part in parts:
                part.close()
    finally:
        for child, receive, _ in children:
            if child.is_alive():
                child.terminate()
            child.join()
            receive.close()
        shutil.rmtree(folder, ignore_errors=True)
    return await RebuildReport.of(shadow, chosen, events, undecodable, started)


async def _collect(
    children: list[tuple[SpawnProcess, Connection, Path]],
    counted: Any,
    chosen: Plan,
    started: float,
    progress: Callable[[Progress], None] | None,
) -> tuple[int, int]:
    """Waits for every child's counts, reporting progress once a second; raises the first
    failure (the caller stops the others)."""
    results: dict[int, tuple[int, int]] = {}
    last_report = started
    while len(results) < len(children):
        for slot, (child, receive, _) in enumerate(children):
            if slot in results:
                continue
            if receive.poll():
                status, value = receive.recv()
                if status != "ok":
                    raise value
                results[slot] = value
            elif not child.is_alive() and not receive.poll():
                raise StoreError(
                    f"rebuild process {child.name} died (exit code {child.exitcode})",
                    retriable=True,
                )
        await asyncio.sleep(0.05)
        now = time.monotonic()
        if progress is not None and now - last_report >= 1.0:
            last_report = now
            done = sum(counted[:]) if len(results) < len(children) else chosen.records
            elapsed = now - started
            rate = done / elapsed if elapsed else 0.0
            eta = (chosen.records - done) / rate if rate else None
            progress(Progress(done, elapsed, rate, {}, eta))
    return sum(r[0] for r in results.values()), sum(r[1] for r in results.values())
