"""``iotctl``: the platform's one command-line entry point.

Exit codes: 0 success, 1 the operation failed (the message says what to do next),
2 the command line was wrong.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from contracts.errors import ContractsError
from devstack.errors import DevStackError
from devstack.process import PRIVATE_UMASK
from iot_gateway.errors import GatewayError
from iotctl import dev as dev_cli
from iotctl import gateway as gateway_cli
from iotctl import policy as policy_cli
from iotctl import replay as replay_cli
from iotctl import schemas as schemas_cli
from iotctl import security as security_cli
from iotctl import streams as streams_cli
from policy.errors import PolicyError
from security.errors import SecurityError
from streams.errors import StreamsError

Handler = Callable[[argparse.Namespace], int]

EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    StreamsError,
    ContractsError,
    DevStackError,
    GatewayError,
    PolicyError,
    SecurityError,
)
"""Error roots whose message is for the user: printed without a traceback, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    """The full ``iotctl`` parser; each feature package adds its own subcommands."""
    parser = argparse.ArgumentParser(
        prog="iotctl",
        description="Operate the IoT telemetry platform: local services, gateway, streams.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    dev_cli.register(commands)
    gateway_cli.register(commands)
    schemas_cli.register(commands)
    policy_cli.register(commands)
    security_cli.register(commands)
    streams_cli.register(commands)
    replay_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs one ``iotctl`` command and returns its exit code."""
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    previous = os.umask(PRIVATE_UMASK)  # what the platform writes is its owner's alone
    try:
        return handler(args)
    except EXPECTED_ERRORS as exc:
        print(f"iotctl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        os.umask(previous)


if __name__ == "__main__":
    sys.exit(main())
