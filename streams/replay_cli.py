"""``iotctl state hash`` and ``iotctl replay rebuild``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path

from streams.errors import ConfigError
from streams.replay import (
    Plan,
    Progress,
    Verification,
    copy_slice,
    plan,
    rebuild,
    state_hashes,
    verify,
)
from streams.worker.runtime import open_store
from streams.worker.settings import load_worker_settings


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
    return int(moment.timestamp() * 1000)


def _cmd_state_hash(args: argparse.Namespace) -> int:
    settings = load_worker_settings(args.config)
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
    behind = sum(end - position for position, end in update.positions.values())
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


def _cmd_rebuild(args: argparse.Namespace) -> int:
    settings = load_worker_settings(args.config)
    if args.dry_run:
        return _print_plan(
            args, settings.telemetry_topic, asyncio.run(plan(settings, args.from_, args.to))
        )
    if not args.shadow:
        raise ConfigError("give --shadow STORE_URL (a new store to rebuild into), or --dry-run")
    if args.shadow == (args.store or settings.store):
        raise ConfigError("the shadow store must not be the live store")
    shadow = open_store(args.shadow)
    try:
        if shadow.devices():
            raise ConfigError(f"the shadow store {args.shadow} is not empty; give a new one")
        report = asyncio.run(
            rebuild(
                settings,
                shadow,
                from_ms=args.from_,
                to_ms=args.to,
                progress=None if args.json else _print_progress,
            )
        )
        result: dict[str, object] = dataclasses.asdict(report) | {"rate": round(report.rate)}
        status = 0
        if args.verify:
            live = open_store(args.store or settings.store)
            try:
                check = verify(live, shadow)
            finally:
                live.close()
            if args.projection != "all":
                check = dataclasses.replace(
                    check,
                    equal={args.projection: check.equal[args.projection]},
                    differing_devices=check.differing_devices
                    if not check.equal[args.projection]
                    else [],
                )
            result["verify"] = dataclasses.asdict(check)
            status = 0 if check.ok else 1
    finally:
        shadow.close()
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(
            f"rebuilt {report.events:,} events in {report.seconds:.1f}s ({report.rate:,.0f} ev/s),"
            f" {report.undecodable} undecodable"
        )
        for name, digest in report.hashes.items():
            print(f"  {name:<8} {digest}")
        if args.verify:
            _print_verification(check)
    return status


def _cmd_copy(args: argparse.Namespace) -> int:
    settings = load_worker_settings(args.config)
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


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``state hash`` and ``replay rebuild``."""
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
    digest.add_argument(
        "--projection", default="all", choices=["all", "devices", "windows", "alerts"]
    )
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
        choices=["all", "devices", "windows", "alerts"],
        help="what --verify compares (every projection is rebuilt: they share one pass)",
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
    build.add_argument("--verify", action="store_true", help="compare shadow and live hashes")
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
