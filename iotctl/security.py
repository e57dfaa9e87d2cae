"""``iotctl devices``, ``iotctl tokens`` and ``iotctl secrets``: credentials of the platform.

* ``devices add|revoke|list``: device passwords are shown once and stored as hashes; in
  secured mode with the broker running, Mosquitto is reloaded at once (a revoked device is
  disconnected and cannot reconnect).
* ``tokens add|revoke|list``: HTTP bearer tokens for ``api_client`` principals, shown once.
* ``secrets list|show``: generated passwords of service principals, masked unless asked.

Exit codes: 0 success, 1 the operation failed (the message says why), 2 the command line
was wrong (including an id the policy would refuse).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable

from devstack.secured import BrokerSync, SecuredStack
from devstack.settings import DevStackSettings
from policy import PrincipalKind
from security.credentials import SecretStore
from security.errors import InvalidIdError, TokenError
from security.tokens import TokenStore

__all__ = ["register"]

Handler = Callable[[argparse.Namespace], int]


def _usage_errors(handler: Handler) -> Handler:
    """Turns an invalid id into exit status 2, like any other wrong command line."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except InvalidIdError as exc:
            print(f"iotctl: {exc}", file=sys.stderr)
            return 2

    return run


def _stack() -> SecuredStack:
    return SecuredStack(DevStackSettings.from_env())


def _sync_line(sync: BrokerSync) -> str:
    return f"mqtt: {sync.note}" + (f" (pid {sync.reloaded_pid})" if sync.reloaded_pid else "")


def _cmd_devices_add(args: argparse.Namespace) -> int:
    stack = _stack()
    issued, sync = stack.add_device(args.device_id)
    settings = stack.settings
    if args.json:
        print(
            json.dumps(
                {
                    "device_id": issued.device.device_id,
                    "password": issued.password,
                    "added_at": issued.device.added_at,
                    "mqtt": dataclasses.asdict(sync),
                }
            )
        )
        return 0
    print(f"Registered {issued.device.device_id}. Its MQTT password, shown only this once:")
    print(f"  {issued.password}")
    print(
        f"Log in as username {issued.device.device_id} on {settings.mqtt_url} or "
        f"mqtts://{settings.host}:{settings.mqtts_port} (CA {stack.ca.files.ca_cert})."
    )
    print(_sync_line(sync), file=sys.stderr)
    return 0


def _cmd_devices_revoke(args: argparse.Namespace) -> int:
    revoked, sync = _stack().revoke_device(args.device_id)
    if args.json:
        print(json.dumps({"device_id": revoked.device_id, "mqtt": dataclasses.asdict(sync)}))
    else:
        print(f"Revoked {revoked.device_id}.")
        print(_sync_line(sync), file=sys.stderr)
    return 0


def _cmd_devices_list(args: argparse.Namespace) -> int:
    devices = _stack().devices.list()
    if args.json:
        print(json.dumps({"devices": [dataclasses.asdict(d) for d in devices]}))
    else:
        for device in devices:
            print(f"{device.device_id}  added {device.added_at}")
        print(f"{len(devices)} device(s)", file=sys.stderr)
    return 0


def _tokens(stack: SecuredStack) -> TokenStore:
    return TokenStore(stack.layout.tokens_file)


def _cmd_tokens_add(args: argparse.Namespace) -> int:
    stack = _stack()
    principal = stack.effective().principal(args.principal)
    if principal is None or principal.kind is not PrincipalKind.API_CLIENT:
        raise TokenError(
            f"{args.principal!r} is not an api_client principal of {stack.policy_path}; "
            "declare it there first"
        )
    issued = _tokens(stack).add(args.principal)
    if args.json:
        print(json.dumps({**dataclasses.asdict(issued.info), "token": issued.token}))
    else:
        print(f"Token {issued.info.token_id} for {issued.info.principal}, shown only this once:")
        print(f"  {issued.token}")
        print("Send it as `Authorization: Bearer <token>`.")
    return 0


def _cmd_tokens_revoke(args: argparse.Namespace) -> int:
    revoked = _tokens(_stack()).revoke(args.token)
    if args.json:
        print(json.dumps({"revoked": [dataclasses.asdict(info) for info in revoked]}))
    else:
        for info in revoked:
            print(f"Revoked {info.token_id} of {info.principal}.")
    return 0


def _cmd_tokens_list(args: argparse.Namespace) -> int:
    tokens = _tokens(_stack()).list()
    if args.json:
        print(json.dumps({"tokens": [dataclasses.asdict(info) for info in tokens]}))
    else:
        for info in tokens:
            print(f"{info.token_id}  {info.principal}  added {info.added_at}")
    return 0


def _secrets() -> SecretStore:
    return _stack().secrets


def _cmd_secrets_list(args: argparse.Namespace) -> int:
    credentials = _secrets().all()
    if args.json:
        print(json.dumps({"principals": {name: c.masked for name, c in credentials.items()}}))
    else:
        for credential in credentials.values():
            print(credential)
    return 0


def _cmd_secrets_show(args: argparse.Namespace) -> int:
    credential = _secrets().get(args.principal)
    if credential is None:
        print(f"iotctl: {args.principal!r} has no generated password", file=sys.stderr)
        return 1
    print(credential.password)
    return 0


def _group(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    text: str,
    actions: list[tuple[str, Handler, str, str | None]],
) -> None:
    group = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
    subcommands = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, handler, help_text, argument in actions:
        parser = subcommands.add_parser(action, help=help_text, description=help_text)
        if argument is not None:
            parser.add_argument(argument.lower(), metavar=argument)
        if name != "secrets" or action == "list":
            parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
        parser.set_defaults(handler=_usage_errors(handler))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``devices``, ``tokens`` and ``secrets`` to the ``iotctl`` parser."""
    _group(
        commands,
        "devices",
        "register and revoke devices (MQTT passwords, shown once, stored hashed)",
        [
            ("add", _cmd_devices_add, "register a device and print its password once", "DEVICE_ID"),
            ("revoke", _cmd_devices_revoke, "revoke a device and disconnect it", "DEVICE_ID"),
            ("list", _cmd_devices_list, "list registered devices", None),
        ],
    )
    _group(
        commands,
        "tokens",
        "issue and revoke HTTP bearer tokens of api_client principals",
        [
            ("add", _cmd_tokens_add, "issue a token and print it once", "PRINCIPAL"),
            ("revoke", _cmd_tokens_revoke, "revoke a token (tok_... id) or a principal's", "TOKEN"),
            ("list", _cmd_tokens_list, "list tokens (ids and principals only)", None),
        ],
    )
    _group(
        commands,
        "secrets",
        "generated passwords of service principals (admin, gateway, ...)",
        [
            ("list", _cmd_secrets_list, "list principals with a password (masked)", None),
            ("show", _cmd_secrets_show, "print one principal's password", "PRINCIPAL"),
        ],
    )
