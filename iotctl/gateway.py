"""``iotctl gateway run`` and ``iotctl simulate``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import uvloop

from contracts import logs
from contracts.registry.factory import open_registry
from devstack.fleet import provision_fleet
from devstack.secured import SecuredStack
from devstack.settings import DevStackSettings
from devstack.simulator import Simulation, SimulationSettings, fleet_ids, format_progress
from iot_gateway.app import serve
from iot_gateway.config import load_config
from iot_gateway.errors import GatewayError


def _cmd_gateway_run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level)
    config = load_config(args.config)

    async def main() -> None:
        async with open_registry(args.registry, config.kafka, patient=True) as registry:
            await serve(config, registry)

    if config.event_loop == "uvloop":
        uvloop.run(main())
    else:
        asyncio.run(main())
    return 0


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be > 0")
    return value


def _logins(args: argparse.Namespace, dev: DevStackSettings) -> dict[str, Any]:
    """How the simulated devices log in: ``--credentials`` (a fleet file of device passwords,
    or one ``username``/``password`` for every device), else ``IOT_SIMULATOR_USERNAME`` and
    ``IOT_SIMULATOR_PASSWORD`` for every device; else, on the secured dev stack, every
    device is registered (once) and logs in as itself."""
    if args.credentials is not None:
        try:
            data = json.loads(args.credentials.read_text())
        except (OSError, ValueError) as exc:
            raise GatewayError(f"cannot read --credentials {args.credentials}: {exc}") from exc
        if isinstance(data.get("devices"), dict):
            return {"device_passwords": data["devices"]}
        return {"username": data.get("username"), "password": data.get("password")}
    if os.environ.get("IOT_SIMULATOR_USERNAME"):
        return {
            "username": os.environ["IOT_SIMULATOR_USERNAME"],
            "password": os.environ.get("IOT_SIMULATOR_PASSWORD"),
        }
    on_stack = (args.host or dev.host) == dev.host and (args.port or dev.mqtt_port) == dev.mqtt_port
    if not (dev.secure and on_stack):
        return {}
    fleet = dev.state_dir / "simulator" / f"{args.prefix}-fleet.json"
    ids = fleet_ids(args.prefix, args.devices)
    return {"device_passwords": provision_fleet(SecuredStack(dev), ids, fleet)}


def _cmd_simulate(args: argparse.Namespace) -> int:
    dev = DevStackSettings.from_env()
    settings = SimulationSettings(
        devices=args.devices,
        rate=args.rate,
        duration_s=args.duration,
        count=args.count,
        host=args.host or dev.host,
        port=args.port or dev.mqtt_port,
        prefix=args.prefix,
        topic_template=args.topic,
        duplicate_ratio=args.duplicates,
        bad_ratio=args.bad,
        state_file=args.state or dev.state_dir / "simulator" / f"{args.prefix}.json",
        ledger=args.ledger,
        seed=args.seed,
        **_logins(args, dev),
    )
    quiet = args.json or args.quiet

    def progress(report: object) -> None:
        if not quiet:
            print(format_progress(report), file=sys.stderr, flush=True)  # type: ignore[arg-type]

    async def main() -> int:
        simulation = Simulation(settings, progress)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, simulation.stop)
        report = await simulation.run()
        summary = dataclasses.asdict(report) | {"rate": round(report.rate, 1)}
        if args.json:
            print(json.dumps(summary))
        else:
            print(
                f"{report.acked:,} of {report.attempted:,} publishes acknowledged by the broker "
                f"in {report.seconds:.1f}s ({report.rate:,.0f} msg/s); "
                f"{report.connect_failures} device(s) could not connect"
                + (f" (first: {report.connect_error})" if report.connect_error else "")
            )
        if report.connect_failures and "authoriz" in report.connect_error.lower():
            print(
                "iotctl: the broker refused the devices' login; pass --credentials FILE or run "
                "against the secured dev stack (it registers simulated devices itself)",
                file=sys.stderr,
            )
        return 0 if report.failed == 0 and report.connect_failures == 0 else 1

    return asyncio.run(main())


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``gateway run`` and ``simulate``."""
    gateway = commands.add_parser("gateway", help="the MQTT to Kafka gateway")
    actions = gateway.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="bridge MQTT to Kafka until SIGTERM",
        description="Bridge MQTT to Kafka: PUBACK only after Kafka acknowledged each record; "
        "bad input goes to the DLQ. SIGTERM drains in-flight work, then disconnects.",
    )
    run.add_argument("--config", type=Path, required=True, help="gateway YAML file")
    run.add_argument(
        "--registry",
        default="embedded",
        help="'embedded' (schemas kept in Kafka; default) or a Confluent-compatible URL",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=_cmd_gateway_run)

    simulate = commands.add_parser(
        "simulate",
        help="simulated devices publishing telemetry",
        description="Simulated devices, one MQTT 5 connection each, publishing readings with "
        "sequence numbers at QoS 1. Exit 1 if any publish was not acknowledged.",
    )
    simulate.add_argument("--devices", type=int, default=100, help="number of devices")
    simulate.add_argument("--rate", type=_positive, default=100.0, help="msg/s over all devices")
    simulate.add_argument("--duration", type=_positive, help="seconds to run (default: forever)")
    simulate.add_argument("--count", type=int, help="stop after this many publishes")
    simulate.add_argument("--duplicates", type=_ratio, default=0.0, help="share published twice")
    simulate.add_argument("--bad", type=_ratio, default=0.0, help="share of bad payloads")
    simulate.add_argument("--prefix", default="sim", help="device id prefix (sim-00000, ...)")
    simulate.add_argument(
        "--topic",
        default="devices/{device_id}/telemetry",
        help="topic template (default: devices/{device_id}/telemetry)",
    )
    simulate.add_argument("--host", help="broker host (default: the dev stack's)")
    simulate.add_argument("--port", type=int, help="broker port (default: IOT_MQTT_PORT or 1883)")
    simulate.add_argument("--state", type=Path, help="file keeping each device's last seq")
    simulate.add_argument("--ledger", type=Path, help="append a JSON line per acknowledged publish")
    simulate.add_argument("--seed", type=int, help="random seed for repeatable readings")
    simulate.add_argument(
        "--credentials",
        type=Path,
        help='JSON file: {"devices": {id: password}} or {"username": ..., "password": ...} '
        "(or IOT_SIMULATOR_USERNAME/IOT_SIMULATOR_PASSWORD; default on the secured dev "
        "stack: register the simulated devices, each logs in as itself)",
    )
    simulate.add_argument("--json", action="store_true", help="print the summary as JSON")
    simulate.add_argument("--quiet", action="store_true", help="no per-second progress")
    simulate.set_defaults(handler=_cmd_simulate)
