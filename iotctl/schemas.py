"""``iotctl schemas``: check the schemas kept in ``schemas/``, push them, show them, serve them.

* ``check`` needs no service: every schema parses, every subject's history is compatible
  under its mode (exit 1 naming the subject, version, field and reason otherwise);
* ``push`` sets each subject's compatibility level from ``subjects.yaml`` and registers its
  versions oldest first; running it again changes nothing;
* ``show`` lists the catalog, or with ``--registry`` what a registry holds;
* ``serve`` runs the embedded registry's Confluent REST API until SIGTERM or Ctrl-C.

Registry flags fall back on ``IOT_REGISTRY_*`` variables (see ``registry.settings``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from contracts.avro import AvroError, SchemaCatalog
from contracts.registry.errors import RegistryError
from contracts.registry.factory import EMBEDDED
from contracts.registry.port import SchemaRegistry
from contracts.registry.server import start_server
from contracts.registry.settings import RegistrySettings
from iotctl.local import open_registry, registry_login


def _settings(args: argparse.Namespace, **extra: Any) -> RegistrySettings:
    given = {
        "url": getattr(args, "registry", None),
        "kafka_bootstrap": getattr(args, "kafka", None),
        "topic": getattr(args, "topic", None),
        **extra,
    }
    return RegistrySettings(**{key: value for key, value in given.items() if value is not None})


def _catalog(args: argparse.Namespace) -> SchemaCatalog:
    return SchemaCatalog.load(args.schemas)


def _fail(action: str, exc: Exception) -> int:
    print(f"iotctl schemas {action}: {exc}", file=sys.stderr)
    return 1


# --- check -----------------------------------------------------------------------------------


def _cmd_check(args: argparse.Namespace) -> int:
    try:
        catalog = _catalog(args)
        checks = catalog.check()
    except AvroError as exc:
        return _fail("check", exc)
    failed = [check for check in checks if not check.compatible]
    for check in failed:
        for issue in check.result.incompatibilities:
            print(
                f"FAIL {check.subject} v{check.version} ({check.result.mode}): {issue.describe()}",
                file=sys.stderr,
            )
    if not args.quiet:
        for name in catalog.subject_names:
            subject = catalog.subject(name)
            state = "FAIL" if any(c.subject == name for c in failed) else "ok  "
            print(f"{state} {name:<32} {subject.compatibility:<20} v1..v{len(subject.versions)}")
    return 1 if failed else 0


# --- push ------------------------------------------------------------------------------------


async def _push(catalog: SchemaCatalog, registry: SchemaRegistry) -> list[dict[str, Any]]:
    report: list[dict[str, Any]] = []
    async with registry:
        for name in catalog.subject_names:
            subject = catalog.subject(name)
            if await registry.subject_compatibility(name) != subject.compatibility:
                await registry.set_compatibility(subject.compatibility, name)
            for entry in subject.versions:
                found = await registry.lookup(name, entry.schema)
                created = found is None
                if found is None:
                    found = await registry.register(name, entry.schema)
                report.append(
                    {
                        "subject": name,
                        "file": f"{subject.family}/v{entry.version}.avsc",
                        "version": found.version,
                        "id": found.schema_id,
                        "registered": created,
                    }
                )
    return report


def _cmd_push(args: argparse.Namespace) -> int:
    try:
        catalog = _catalog(args)
        report = asyncio.run(_push(catalog, open_registry(_settings(args))))
    except (AvroError, RegistryError) as exc:
        return _fail("push", exc)
    if args.json:
        print(json.dumps({"pushed": report}, indent=2))
        return 0
    for item in report:
        what = "registered" if item["registered"] else "already registered"
        print(f"{item['subject']:<32} {item['file']:<26} version {item['version']:<3} "
              f"id {item['id']:<4} {what}")  # fmt: skip
    return 0


# --- show ------------------------------------------------------------------------------------


def _show_catalog(catalog: SchemaCatalog, subject: str | None) -> dict[str, Any]:
    names = [subject] if subject else list(catalog.subject_names)
    return {
        "source": str(catalog.root),
        "subjects": [
            {
                "subject": name,
                "compatibility": str(catalog.compatibility(name)),
                "versions": [
                    {"version": v.version, "file": str(v.path), "fingerprint": v.schema.fingerprint}
                    for v in catalog.versions(name)
                ],
                **({"schema": catalog.latest(name).definition} if subject else {}),
            }
            for name in names
        ],
    }


async def _show_registry(registry: SchemaRegistry, subject: str | None) -> dict[str, Any]:
    async with registry:
        names = [subject] if subject else list(await registry.subjects())
        subjects = []
        for name in names:
            versions = [await registry.version(name, n) for n in await registry.versions(name)]
            item: dict[str, Any] = {
                "subject": name,
                "compatibility": str(await registry.get_compatibility(name)),
                "versions": [
                    {"version": v.version, "id": v.schema_id, "fingerprint": v.schema.fingerprint}
                    for v in versions
                ],
            }
            if subject:
                item["schema"] = versions[-1].schema.definition
            subjects.append(item)
        return {"source": str(getattr(registry, "url", getattr(registry, "topic", ""))),
                "global_compatibility": str(await registry.get_compatibility()),
                "subjects": subjects}  # fmt: skip


def _cmd_show(args: argparse.Namespace) -> int:
    try:
        if args.registry is None:
            shown = _show_catalog(_catalog(args), args.subject)
        else:
            shown = asyncio.run(_show_registry(open_registry(_settings(args)), args.subject))
    except (AvroError, RegistryError) as exc:
        return _fail("show", exc)
    if args.json:
        print(json.dumps(shown, indent=2))
        return 0
    print(f"# {shown['source']}")
    for item in shown["subjects"]:
        versions = ", ".join(
            f"v{v['version']}" + (f" (id {v['id']})" if "id" in v else "") for v in item["versions"]
        )
        print(f"{item['subject']:<32} {item['compatibility']:<20} {versions}")
        if "schema" in item:
            print(json.dumps(item["schema"], indent=2))
    return 0


# --- serve -----------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    settings = _settings(args, url=EMBEDDED)
    login = registry_login(settings)
    async with open_registry(settings) as registry:
        runner, url = await start_server(registry, args.host, args.port, login=login)
        try:
            writes = (
                f"writes need HTTP Basic login {login[0]!r}"
                if login is not None
                else "read-only: set IOT_REGISTRY_USERNAME and _PASSWORD to accept writes"
            )
            print(
                f"serving the embedded schema registry at {url} ({writes})",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
        finally:
            await runner.cleanup()


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_serve(args))
    except (RegistryError, OSError) as exc:
        return _fail("serve", exc)
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``schemas check|push|show|serve`` to the ``iotctl`` parser."""
    schemas = commands.add_parser(
        "schemas",
        help="check, push, show and serve the Avro schemas",
        description="Avro event contracts: the schemas/ catalog and the schema registry.",
    )
    actions = schemas.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, handler: Any, text: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        parser.set_defaults(handler=handler)
        return parser

    def catalog_flag(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--schemas", type=Path, help="schemas folder (default: schemas/)")

    def registry_flags(parser: argparse.ArgumentParser, *, url: bool = True) -> None:
        if url:
            parser.add_argument("--registry", metavar="URL|embedded", help="registry to use")
        parser.add_argument("--kafka", metavar="HOST:PORT", help="embedded registry's Kafka")
        parser.add_argument("--topic", help="embedded registry's log topic (_iot_schemas)")

    check = action("check", _cmd_check, "every schema parses and each history is compatible")
    catalog_flag(check)
    check.add_argument("--quiet", action="store_true", help="print only failures")

    push = action("push", _cmd_push, "register every subject's versions in order (idempotent)")
    catalog_flag(push)
    registry_flags(push)
    push.add_argument("--json", action="store_true", help="print machine-readable JSON")

    show = action("show", _cmd_show, "list the catalog's subjects, or a registry's")
    show.add_argument("subject", nargs="?", help="one subject, with its latest schema")
    catalog_flag(show)
    registry_flags(show)
    show.add_argument("--json", action="store_true", help="print machine-readable JSON")

    serve = action("serve", _cmd_serve, "serve the embedded registry's Confluent REST API")
    registry_flags(serve, url=False)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8081, help="port to listen on (8081)")
