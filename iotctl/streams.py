"""``iotctl streams worker``: run one stream worker until SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path

from contracts import logs
from iotctl.local import worker_settings


def _cmd_worker(args: argparse.Namespace) -> int:
    import faust  # noqa: PLC0415 - faust is heavy; only the worker needs it

    from streams.worker.app import build_app  # noqa: PLC0415

    logs.configure(args.log_level)
    settings = worker_settings(args.config, principal="streams")
    app = build_app(settings)
    worker = faust.Worker(app, loglevel=args.log_level.upper(), quiet=True)
    worker.execute_from_commandline()  # handles SIGTERM/SIGINT; exits the process


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``streams worker``."""
    streams = commands.add_parser("streams", help="the stream processors")
    actions = streams.add_subparsers(dest="action", required=True, metavar="ACTION")
    worker = actions.add_parser(
        "worker",
        help="run a stream worker (faust) until SIGTERM",
        description="Consume iot.telemetry.v1 in the worker group, apply each batch exactly "
        "once to the store (inbox, projections, outbox in one transaction), relay the outbox.",
    )
    worker.add_argument("--config", type=Path, help="worker YAML file (config/streams.yaml)")
    worker.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    worker.set_defaults(handler=_cmd_worker)
