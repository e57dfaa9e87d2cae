"""``iotctl state hash`` and ``iotctl replay rebuild|copy|reset-group``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from contracts.times import epoch_ms
from devstack import ADMIN
from iotctl.local import worker_settings
from streams.errors import ConfigError
from streams.layout import PartitionLayout
from streams.replay.jobs import rebuild_parallel
from streams.replay.rebuild import (
    Plan,
    Progress,
    RebuildReport,
    Swapped,
    Verification,
    compare,
    copy_slice,
    plan,
    rebuild,
    refuse_lossy_swap,
    retention_deleted,
    state_hashes,
    swap,
    verify_aligned,
)
from streams.replay.repartition import execute_repartition, plan_repartition
from streams.replay.reset import ResetPlan, ResetTarget, execute_reset, plan_reset
from streams.settings import WorkerSettings
from streams.store import open_store
from streams.store.port import Projection, Store
from streams.store.sqlite import SqliteStore

PROJECTIONS = ["all", *(p.value for p in Projection)]


def _projection(name: str) -> str:
    """``name`` if it is a projection or ``all``; ConfigError (exit 1) otherwise."""
    if name not in PROJECTIONS:
        raise ConfigError(f"unknown projection {name!r}: one of {', '.join(PROJECTIONS)}")
    return name


def _open_shadow(url: str) -> Store:
    """The shadow store: an SQLite shadow skips fsyncs (it is verified before it is used,
    and a crash during a rebuild means rebuilding again)."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        store = SqliteStore(path, synchronous="OFF")
        store.migrate()
        return store
    return open_store(url)


def _time_ms(text: str) -> int | None:
    """``earliest`` -> None; an ISO-8601 time (with zone) or epoch milliseconds -> ms."""
    if text == "earliest":
        return None
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not 'earliest', epoch milliseconds or an ISO-8601 time"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a time zone (e.g. 2026-11-26T10:00Z)")
    return epoch_ms(moment)


def _cmd_state_hash(args: argparse.Namespace) -> int:
    _projection(args.projection)
    settings = worker_settings(args.config, principal=ADMIN)
    store = open_store(args.store or settings.store)
    try:
        hashes = state_hashes(store)
    finally:
        store.close()
    if args.projection != "all":
        hashes = {args.projection: hashes[args.projection]}
    if args.json:
        print(json.dumps(hashes, sort_keys=True))
    else:
        for name, digest in hashes.items():
            print(f"{name:<8} {digest}")
    return 0


def _print_progress(update: Progress) -> None:
    eta = f"{update.eta_s:.0f}s" if update.eta_s is not None else "?"
    if update.positions:
        behind = sum(end - position for position, end in update.positions.values())
    else:  # several processes: only their event counts are known
        behind = round(update.eta_s * update.rate) if update.eta_s is not None else 0
    print(
        f"{update.seconds:6.1f}s  {update.events:>10,} events  {update.rate:>9,.0f} ev/s  "
        f"{behind:>9,} to go  ETA {eta}",
        file=sys.stderr,
        flush=True,
    )


def _print_plan(args: argparse.Namespace, topic: str, chosen: Plan) -> int:
    if args.json:
        print(json.dumps(dataclasses.asdict(chosen) | {"records": chosen.records}))
        return 0
    print(f"would apply {chosen.records:,} records of {topic}:")
    for partition in sorted(chosen.start):
        first, end = chosen.start[partition], chosen.end[partition]
        print(f"  partition {partition}: offsets {first:,}..{end:,}")
    return 0


def _print_verification(check: Verification) -> None:
    verdict = "equal to the live store" if check.ok else "DIFFERENT from the live store"
    print(f"verify: {verdict}")
    for name, same in check.equal.items():
        print(f"  {name:<8} {'same' if same else 'differs'}")
    if not check.ok:
        print("  differing devices: " + ", ".join(check.differing_devices))
        for name, keys in check.differing_keys.items():
            print(f"  differing {name}: " + ", ".join(keys))
    if not check.aligned:
        print("  (not at the same offsets: the live store had not applied what the shadow had)")


def _check_rebuild_args(args: argparse.Namespace, settings: WorkerSettings) -> str:
    """The live store URL; ConfigError for contradicting options (before anything runs)."""
    _projection(args.projection)
    live_url: str = args.store or settings.store
    if args.dry_run:
        return live_url
    if not args.shadow:
        raise ConfigError("give --shadow STORE_URL (a new store to rebuild into), or --dry-run")
    if args.shadow == live_url:
        raise ConfigError("the shadow store must not be the live store")
    if args.swap and args.from_ is not None:
        raise ConfigError(
            "--swap needs the whole log (--from earliest): a rebuild from a later time lacks "
            "the state of the events before it"
        )
    if args.swap and args.projection != "all":
        raise ConfigError("--swap replaces every projection; leave out --projection")
    if args.swap and live_url.split(":", 1)[0] != args.shadow.split(":", 1)[0]:
        raise ConfigError(
            "--swap needs the shadow on the live store's adapter (both sqlite or both postgresql)"
        )
    return live_url


def _jobs(args: argparse.Namespace) -> int:
    """--jobs, by default every CPU for an SQLite shadow (one process otherwise)."""
    sqlite = str(args.shadow or "").startswith("sqlite:///")
    if args.jobs is None:
        return (os.cpu_count() or 1) if sqlite else 1
    if args.jobs < 1:
        raise ConfigError("--jobs must be at least 1")
    if args.jobs > 1 and not sqlite:
        raise ConfigError("--jobs above 1 needs an SQLite shadow (sqlite:///PATH)")
    return int(args.jobs)


async def _rebuild(
    args: argparse.Namespace,
    settings: WorkerSettings,
    shadow: Store,
    progress: Callable[[Progress], None] | None,
    layout: PartitionLayout | None,
) -> RebuildReport:
    """One process, or ``--jobs`` processes each rebuilding some partitions, then merged;
    records judged by the live store's partition layout (``layout``) when it has one."""
    jobs = _jobs(args)
    span = {"from_ms": args.from_, "to_ms": args.to, "progress": progress, "layout": layout}
    if jobs > 1 and isinstance(shadow, SqliteStore):
        return await rebuild_parallel(settings, shadow, jobs=jobs, **span)
    return await rebuild(settings, shadow, **span)


def _live_layout(live_url: str, topic: str) -> PartitionLayout | None:
    """The live store's partition layout (every repartition it went through), if any; an
    SQLite live store that does not exist is not created."""
    if live_url.startswith("sqlite:///") and not Path(live_url.removeprefix("sqlite:///")).exists():
        return None
    live = open_store(live_url)
    try:
        return live.partition_layout(topic)
    finally:
        live.close()


def _cmd_rebuild(args: argparse.Namespace) -> int:
    settings = worker_settings(args.config, principal=ADMIN)
    live_url = _check_rebuild_args(args, settings)
    _jobs(args)  # refuses a bad --jobs before anything runs
    chosen = asyncio.run(plan(settings, args.from_, args.to))  # refuses bad ranges first
    if args.swap:  # refuses a lossy swap before the rebuild, not after
        refuse_lossy_swap(asyncio.run(retention_deleted(settings)), args.accept_loss)
    if args.dry_run:
        return _print_plan(args, settings.telemetry_topic, chosen)
    shadow = _open_shadow(args.shadow)
    check: Verification | None = None
    swapped: Swapped | None = None
    try:
        if shadow.devices() or shadow.positions(settings.group):
            raise ConfigError(f"the shadow store {args.shadow} is not empty; give a new one")
        layout = _live_layout(live_url, settings.telemetry_topic)
        report = asyncio.run(
            _rebuild(args, settings, shadow, None if args.json else _print_progress, layout)
        )
        result: dict[str, object] = dataclasses.asdict(report) | {"rate": round(report.rate)}
        if args.verify or args.swap:
            live = open_store(live_url)
            try:
                if args.verify:
                    check = _verify(args, settings, live, shadow)
                    result["verify"] = dataclasses.asdict(check)
                if args.swap:
                    swapped = asyncio.run(
                        swap(settings, live, shadow, accept_loss=args.accept_loss)
                    )
                    result["swap"] = dataclasses.asdict(swapped)
            finally:
                live.close()
    finally:
        shadow.close()
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        _print_rebuild(report, check, swapped)
    return 1 if check is not None and not check.ok and swapped is None else 0


def _print_rebuild(
    report: RebuildReport, check: Verification | None, swapped: Swapped | None
) -> None:
    print(
        f"rebuilt {report.events:,} events in {report.seconds:.1f}s ({report.rate:,.0f} ev/s),"
        f" {report.undecodable} undecodable"
    )
    for name, digest in report.hashes.items():
        print(f"  {name:<8} {digest}")
    if check is not None:
        _print_verification(check)
    if swapped is not None:
        _print_swap(swapped)


def _print_swap(swapped: Swapped) -> None:
    print(
        f"swapped: the shadow is live (generation {swapped.generation}); workers re-apply "
        f"about {swapped.reapplied:,} records from its offsets"
    )
    loss = swapped.loss
    if loss is not None:
        print(
            f"LOST (accepted): {loss.records:,} records retention had deleted; "
            f"{len(loss.devices_dropped):,} devices dropped"
            + (": " + ", ".join(loss.devices_dropped[:20]) if loss.devices_dropped else "")
            + (" ..." if len(loss.devices_dropped) > 20 else "")
        )


def _verify(
    args: argparse.Namespace, settings: WorkerSettings, live: Store, shadow: Store
) -> Verification:
    """Shadow against live at the same offsets (without --to: the shadow catches up)."""
    if args.to is None:
        check = asyncio.run(verify_aligned(settings, live, shadow, wait_s=args.wait))
    else:
        check = compare(live.snapshot(settings.group), shadow.snapshot(settings.group))
    if args.projection != "all":
        name = args.projection
        check = dataclasses.replace(
            check,
            equal={name: check.equal[name]},
            differing_devices=[] if check.equal[name] else check.differing_devices,
            differing_keys={k: v for k, v in check.differing_keys.items() if k == name},
        )
    return check


def _cmd_copy(args: argparse.Namespace) -> int:
    settings = worker_settings(args.config, principal=ADMIN)
    report = asyncio.run(
        copy_slice(
            settings.kafka,
            args.topic,
            args.target,
            from_ms=args.from_,
            to_ms=args.to,
            device_id=args.device,
            rate=args.rate,
        )
    )
    if args.json:
        print(json.dumps(dataclasses.asdict(report)))
    else:
        print(
            f"copied {report.copied:,} of {report.read:,} records from {args.topic} to "
            f"{args.target} in {report.seconds:.1f}s"
        )
    return 0


def _reset_target(text: str) -> ResetTarget:
    """``earliest``, ``latest``, epoch milliseconds or an ISO-8601 time with zone."""
    if text in {"earliest", "latest"}:
        return "earliest" if text == "earliest" else "latest"
    at = _time_ms(text)
    assert at is not None  # noqa: S101 - "earliest" was handled above
    return at


def _print_reset(chosen: ResetPlan) -> None:
    print(
        f"group {chosen.group} on {chosen.topic}, to {chosen.to} "
        f"(group {chosen.state.lower()}, {len(chosen.members)} active members)"
    )
    print(f"  {'PARTITION':>9} {'COMMITTED':>10} {'STORE':>10} {'NEW':>10} {'LOG END':>10}  NOTE")
    for p in chosen.partitions:
        note = (
            "BACKWARD: refused"
            if p.backward
            else f"skips {p.skipped:,} events"
            if p.skipped
            else "unchanged"
            if p.new == p.stored
            else ""
        )
        committed = "-" if p.committed is None else f"{p.committed:,}"
        stored = "-" if p.stored is None else f"{p.stored:,}"
        print(
            f"  {p.partition:>9} {committed:>10} {stored:>10} {p.new:>10,} {p.log_end:>10,}  {note}"
        )
    print("  (offsets are next offsets; STORE is where the workers resume: last applied + 1)")


def _cmd_repartition(args: argparse.Namespace) -> int:
    settings = worker_settings(args.config, principal=ADMIN)
    store = open_store(args.store or settings.store)
    try:
        chosen = asyncio.run(plan_repartition(settings, store, args.partitions))
        reason = chosen.refusal()
        layout = None
        if args.execute and reason is None:
            layout = asyncio.run(execute_repartition(settings, store, chosen))
    finally:
        store.close()
    if args.json:
        report = dataclasses.asdict(chosen) | {
            "pending": chosen.pending,
            "refused": reason,
            "executed": layout is not None,
        }
        print(json.dumps(report, sort_keys=True))
    else:
        print(
            f"{chosen.topic}: {chosen.current} partitions, the store plans {chosen.planned}; "
            f"target {chosen.target}"
        )
        for partition, left in chosen.pending.items():
            print(f"  partition {partition}: {left:,} records not applied yet")
    if reason is not None:
        raise ConfigError(reason)
    if not args.json:
        print(
            "dry run: nothing changed (add --execute)"
            if layout is None
            else f"repartitioned: {layout.partitions} partitions; restart the workers"
        )
    return 0


def _cmd_reset_group(args: argparse.Namespace) -> int:
    settings = worker_settings(args.config, principal=ADMIN)
    store = open_store(args.store or settings.store)
    generation: int | None = None
    try:
        chosen = asyncio.run(plan_reset(settings, store, args.group, args.to, args.topic))
        reason = chosen.refusal()
        if args.execute and reason is None:
            generation = asyncio.run(execute_reset(settings, store, chosen))
    finally:
        store.close()
    if args.json:
        report = dataclasses.asdict(chosen) | {
            "skipped": chosen.skipped,
            "refused": reason,
            "executed": generation is not None,
            "generation": generation,
        }
        print(json.dumps(report, sort_keys=True))
    else:
        _print_reset(chosen)
    if reason is not None:
        raise ConfigError(reason)
    if not args.json:
        if generation is None:
            print("dry run: nothing changed (add --execute to move the group and the store)")
        else:
            print(
                "reset: the group's committed offsets and the store's moved "
                f"(store generation {generation})"
            )
        if chosen.skipped:
            print(
                f"the store's state will never include the {chosen.skipped:,} skipped events "
                "(to get them back: iotctl replay rebuild --shadow NEW_STORE --verify --swap)"
            )
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``state hash`` and ``replay rebuild|copy|reset-group|repartition``."""
    state = commands.add_parser("state", help="the stream processors' state")
    state_actions = state.add_subparsers(dest="action", required=True, metavar="ACTION")
    digest = state_actions.add_parser(
        "hash",
        help="a deterministic checksum of each projection",
        description="Print the canonical SHA-256 of each projection of a store: equal logs "
        "give equal hashes, whatever the batch sizes, crashes or adapter.",
    )
    digest.add_argument("--config", type=Path, default=Path("config/streams.yaml"))
    digest.add_argument("--store", help="store URL (default: the worker's)")
    digest.add_argument("--projection", default="all", help="all, " + ", ".join(PROJECTIONS[1:]))
    digest.add_argument("--json", action="store_true", help="print JSON")
    digest.set_defaults(handler=_cmd_state_hash)

    replay = commands.add_parser("replay", help="rebuild state from the event log")
    replay_actions = replay.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = replay_actions.add_parser(
        "rebuild",
        help="apply the log into a shadow store (and compare it with the live one)",
        description="Read the telemetry topic with a consumer of its own (no consumer group) "
        "and apply the workers' processor into a new shadow store. Exit 1 if --verify finds a "
        "difference.",
    )
    build.add_argument("--config", type=Path, default=Path("config/streams.yaml"))
    build.add_argument("--store", help="the live store URL (default: the worker's)")
    build.add_argument("--shadow", help="a new store URL to rebuild into")
    build.add_argument(
        "--projection",
        default="all",
        help="what --verify compares: all (default), "
        + ", ".join(PROJECTIONS[1:])
        + " (every projection is rebuilt: they share one pass)",
    )
    build.add_argument(
        "--dry-run", action="store_true", help="print the offsets it would read; apply nothing"
    )
    build.add_argument(
        "--from",
        dest="from_",
        type=_time_ms,
        default=None,
        metavar="TIME",
        help="earliest (default), epoch ms or ISO-8601 with zone",
    )
    build.add_argument(
        "--to", type=_time_ms, default=None, metavar="TIME", help="default: the log's end"
    )
    build.add_argument(
        "--verify",
        action="store_true",
        help="compare shadow and live at the same offsets; name the keys that differ",
    )
    build.add_argument(
        "--swap",
        action="store_true",
        help="then make the shadow the live state, atomically, under running workers "
        "(refused once retention deleted the start of the log, see --accept-loss)",
    )
    build.add_argument(
        "--accept-loss",
        action="store_true",
        help="swap even though retention deleted records the live state was built from "
        "(the report lists the devices dropped)",
    )
    build.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long --verify waits for live workers behind the shadow (default 30)",
    )
    build.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="processes rebuilding partitions in parallel, merged into the shadow at the end "
        "(default: the number of CPUs for an SQLite shadow, else 1)",
    )
    build.add_argument("--json", action="store_true", help="print the report as JSON")
    build.set_defaults(handler=_cmd_rebuild)

    copy = replay_actions.add_parser(
        "copy",
        help="re-publish a slice of a topic, keeping keys, headers and event ids",
        description="Copy the records of TOPIC between --from and --to (optionally of one "
        "device) to --target, with an idempotent producer, at most --rate records/s.",
    )
    copy.add_argument("--config", type=Path, default=Path("config/streams.yaml"))
    copy.add_argument("--topic", required=True)
    copy.add_argument("--target", required=True)
    copy.add_argument("--from", dest="from_", type=_time_ms, default=None, metavar="TIME")
    copy.add_argument("--to", type=_time_ms, default=None, metavar="TIME")
    copy.add_argument("--device", help="only this device's records (the Kafka key)")
    copy.add_argument("--rate", type=float, help="records per second at most")
    copy.add_argument("--json", action="store_true", help="print the report as JSON")
    copy.set_defaults(handler=_cmd_copy)

    reset = replay_actions.add_parser(
        "reset-group",
        help="move an idle consumer group's offsets, and the store's, forward (dry run first)",
        description="Like kafka-consumer-groups --reset-offsets for the workers' group: prints "
        "each partition's committed, stored and new offsets, and with --execute moves the "
        "group's committed offsets and the store's inbox offsets (where workers resume). Only "
        "forward: events skipped are never applied to state; moving back needs `rebuild "
        "--swap`. Refused while the group has active members.",
    )
    reset.add_argument("--config", type=Path, default=Path("config/streams.yaml"))
    reset.add_argument("--store", help="the live store URL (default: the worker's)")
    reset.add_argument("--group", required=True, help="the consumer group (the workers' group)")
    reset.add_argument(
        "--to",
        required=True,
        type=_reset_target,
        metavar="earliest|latest|TIME",
        help="the log's start, its end, or the first record at or after TIME (epoch ms or "
        "ISO-8601 with zone)",
    )
    reset.add_argument("--topic", help="default: the telemetry topic")
    reset.add_argument("--execute", action="store_true", help="apply it (default: dry run)")
    reset.add_argument("--json", action="store_true", help="print the plan as JSON")
    reset.set_defaults(handler=_cmd_reset_group)
    _register_repartition(replay_actions)


def _register_repartition(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    grow = actions.add_parser(
        "repartition",
        help="add partitions to the telemetry topic without splitting devices (dry run first)",
        description="Adds partitions once the workers applied every record (stop the "
        "gateways first) and records in the store from which offsets the new count applies; "
        "workers refuse a count their store does not plan. Restart the workers afterwards.",
    )
    grow.add_argument("--config", type=Path, default=Path("config/streams.yaml"))
    grow.add_argument("--store", help="the live store URL (default: the worker's)")
    grow.add_argument("--partitions", type=int, required=True, help="the new partition count")
    grow.add_argument("--execute", action="store_true", help="apply it (default: dry run)")
    grow.add_argument("--json", action="store_true", help="print the plan as JSON")
    grow.set_defaults(handler=_cmd_repartition)
