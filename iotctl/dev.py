"""``iotctl dev``: start, stop and inspect the local Kafka, Mosquitto and PostgreSQL."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from devstack.settings import DevStackSettings
from devstack.stack import ServiceStatus, down, status, up


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _print_table(report: list[ServiceStatus]) -> None:
    width = max(len(item.endpoint) for item in report)
    for item in report:
        state = "up  " if item.answers else "DOWN"
        pid = f"pid {item.pid}" if item.pid else "no pid"
        print(f"{state} {item.name:<10} {item.endpoint:<{width}}  {pid:<10}  {item.detail}")


def _cmd_up(args: argparse.Namespace) -> int:
    settings = DevStackSettings.from_env()
    started = time.monotonic()
    print(f"Starting the local stack in {settings.state_dir} ...", file=sys.stderr)
    report = up(settings, _progress)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps({"seconds": round(elapsed, 1), "services": _as_dicts(report)}))
    else:
        _print_table(report)
        print(f"Ready in {elapsed:.1f}s. Stop everything with `make down`.")
    return 0 if all(item.answers for item in report) else 1


def _cmd_down(args: argparse.Namespace) -> int:
    stopped = down(DevStackSettings.from_env(), _progress)
    if args.json:
        print(json.dumps({"stopped": stopped}))
    return 0


def _as_dicts(report: list[ServiceStatus]) -> list[dict[str, object]]:
    return [dataclasses.asdict(item) for item in report]


def _cmd_status(args: argparse.Namespace) -> int:
    report = status(DevStackSettings.from_env())
    if args.json:
        print(json.dumps({"services": _as_dicts(report)}, indent=2))
    else:
        _print_table(report)
    return 0 if all(item.answers for item in report) else 1


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``dev up|down|status`` to the ``iotctl`` parser."""
    dev = commands.add_parser(
        "dev",
        help="run the local Kafka, Mosquitto and PostgreSQL",
        description="Start, stop and inspect the local services. Ports and paths come from "
        "IOT_* variables (IOT_KAFKA_PORT, IOT_MQTT_PORT, IOT_PG_PORT, IOT_LOCAL_DIR, ...).",
    )
    actions = dev.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, handler, text in (
        ("up", _cmd_up, "start every service that is not running and wait until all answer"),
        ("down", _cmd_down, "stop exactly the processes `dev up` started"),
        ("status", _cmd_status, "each service's endpoint and whether it answers (exit 1 if not)"),
    ):
        action = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        action.add_argument("--json", action="store_true", help="print machine-readable JSON")
        action.set_defaults(handler=handler)
