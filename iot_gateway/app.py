"""One gateway process: register the routes' schemas, serve HTTP, bridge until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
from typing import Any, Protocol

from aiohttp import web

from contracts.avro import AvroSchema, RegisteredSchema, SchemaCatalog
from contracts.topics import DEVICE_EVENTS
from iot_gateway.bridge import Gateway
from iot_gateway.codecs import SubjectCodec
from iot_gateway.config import GatewayConfig
from iot_gateway.downlink import Downlink
from iot_gateway.edge.server import EdgeServer
from iot_gateway.errors import ConfigError
from iot_gateway.http import build_app
from iot_gateway.ingest import allow_all
from security.hooks import PolicyWatch, watched_ingest_authorize, watched_subscribe_authorize
from security.logins import PasswordFile

log = logging.getLogger("iot_gateway")


class GatewayRegistry(Protocol):
    """What the gateway needs of a schema registry (see ``contracts.registry``)."""

    async def register(self, subject: str, schema: AvroSchema) -> RegisteredSchema: ...

    async def decode(self, frame: bytes) -> Any:
        """Decodes a Confluent frame, fetching its writer schema once if it is new."""
        ...


async def build_gateway(config: GatewayConfig, registry: GatewayRegistry) -> Gateway | EdgeServer:
    """Registers each route's latest schema (idempotent) and wires the mode's runtime."""
    catalog = SchemaCatalog.load(config.schemas_dir)
    codecs = {}
    for route in config.routes:
        registered = await registry.register(route.subject, catalog.latest(route.subject))
        codecs[route.subject] = SubjectCodec(registered)
        log.info("route %s: %s as schema id %d", route.name, route.subject, registered.schema_id)
    watch = _policy_watch(config)
    authorize = allow_all if watch is None else watched_ingest_authorize(watch)

    async def decode_command(frame: bytes) -> dict[str, Any]:
        value = await registry.decode(frame)
        if not isinstance(value, dict):
            raise TypeError("a command must be an Avro record")
        return value

    if config.mode == "direct":
        presence = None
        if config.edge.presence:
            subject = f"{DEVICE_EVENTS.name}-value"
            presence = SubjectCodec(await registry.register(subject, catalog.latest(subject)))
        return EdgeServer(
            config,
            codecs,
            authorize=authorize,
            authorize_subscribe=(
                (lambda principal, topic_filter: None)
                if watch is None
                else watched_subscribe_authorize(watch)
            ),
            logins=_logins(config, watch),
            decode_command=decode_command if config.downlink.enabled else None,
            presence_codec=presence,
        )
    gateway = Gateway(config, codecs, authorize=authorize)
    if config.downlink.enabled:
        gateway.add_session_task(Downlink(config, decode_command, gateway.metrics))
    return gateway


def _allow_many_connections() -> None:
    """Raises the open-files limit to its hard limit: each device connection is a socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        log.info("open files limit raised from %d to %d", soft, hard)


def _policy_watch(config: GatewayConfig) -> PolicyWatch | None:
    """The policy every message is checked against; None only when it is explicitly off."""
    if not config.policy.enabled:
        log.warning(
            "PER-MESSAGE AUTHORIZATION IS DISABLED (policy.enabled=false): any client may "
            "publish as any device"
        )
        return None
    if config.policy.file is None:
        raise ConfigError(
            "the gateway needs policy.file, the security policy every message is checked "
            "against (IOT_GATEWAY_POLICY__FILE); to let every device through set "
            "policy.enabled=false explicitly"
        )
    devices = config.policy.devices_file or config.policy.file.parent / "devices.json"
    log.info("authorizing every message with the policy %s", config.policy.file)
    return PolicyWatch(config.policy.file, devices, admin=config.policy.admin)


def _logins(config: GatewayConfig, watch: PolicyWatch | None) -> PasswordFile | None:
    """Who may connect in direct mode; None (anyone) only with the policy explicitly off."""
    if watch is None:
        log.warning("LOGINS ARE NOT CHECKED (policy.enabled=false): any client may connect")
        return None
    path = config.edge.password_file
    if path is None:
        raise ConfigError(
            "direct mode needs edge.password_file, the logins devices connect with "
            "(IOT_GATEWAY_EDGE__PASSWORD_FILE; `iotctl security apply` renders it); to let "
            "anyone connect set policy.enabled=false explicitly"
        )
    try:
        return PasswordFile(path)
    except OSError as exc:
        raise ConfigError(f"edge.password_file {path} cannot be read: {exc}") from exc


async def serve(config: GatewayConfig, registry: GatewayRegistry) -> None:
    """Runs the gateway and its HTTP endpoints until SIGTERM or SIGINT, then drains."""
    if config.mode == "direct":
        _allow_many_connections()
    gateway = await build_gateway(config, registry)
    runner = web.AppRunner(build_app(gateway), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.http.host, config.http.port)
    await site.start()
    log.info("http on %s:%d (/metrics /healthz /readyz /stats)", config.http.host, config.http.port)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, gateway.stop)
    try:
        await gateway.run()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        await runner.cleanup()
