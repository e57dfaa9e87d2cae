"""Bring the local services up, take them down, and report on them.

``up`` is idempotent: a service already running and answering is left alone; the others are
prepared and started together, then awaited. ``down`` stops exactly the processes ``up``
started, found through their pid files.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from devstack.apps import GatewayApp, SimulatorApp, StreamsWorkerApp
from devstack.errors import PortInUseError, ServiceStartError
from devstack.kafka import Kafka, kafka_nodes
from devstack.mosquitto import Mosquitto
from devstack.postgres import Postgres
from devstack.process import (
    PRIVATE_UMASK,
    alive,
    in_namespace,
    port_open,
    running_pid,
    spawn,
    stop_together,
    tail,
)
from devstack.secured import SecuredStack
from devstack.service import Progress, Service
from devstack.settings import DevStackSettings
from policy import PolicyError
from security import SecurityError


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """One service as ``iotctl dev status`` reports it."""

    name: str
    endpoint: str
    pid: int | None
    answers: bool
    detail: str
    log_file: str


def services(settings: DevStackSettings, *, every_kind: bool = False) -> list[Service]:
    """The local services in start order: servers, then the platform's processes.

    ``every_kind`` lists them all whatever the settings enable (``down`` stops them all).
    """
    chosen: list[Service] = [Postgres(settings), *kafka_nodes(settings, every_kind=every_kind)]
    if settings.runs_mosquitto or every_kind:
        chosen.insert(1, Mosquitto(settings))
    if settings.apps or every_kind:
        chosen += [GatewayApp(settings), StreamsWorkerApp(settings)]
    if settings.simulate or every_kind:
        chosen.append(SimulatorApp(settings))
    return chosen


def _start(service: Service, progress: Progress) -> int | None:
    """Starts ``service`` unless it is already running; returns the pid it got, if started."""
    if running_pid_of(service) is not None:
        return None
    if service.listens and port_open(service.address, service.port):
        raise PortInUseError(
            f"{service.name}: port {service.port} is in use by a process `iotctl dev up` did not "
            f"start; stop it or choose another port with {service.env_port_variable}=..."
        )
    service.prepare(progress)
    launch, own_host = service.launch(), service.settings.host_of(service.name)
    pid = spawn(in_namespace(launch, own_host.namespace) if own_host else launch, service.handle)
    progress(f"{service.name}: started (pid {pid}), log {service.log_file}")
    return pid


def running_pid_of(service: Service) -> int | None:
    """The pid of ``service`` if the dev stack started it and it still runs."""
    return running_pid(service.handle)


def _await(pending: dict[Service, int | None], timeout_s: float, progress: Progress) -> None:
    """Waits until each service answers; ``pending`` maps it to the pid we just started."""
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    while pending:
        for service, pid in list(pending.items()):
            if (pid is None and running_pid_of(service) is None) or (pid and not alive(pid)):
                raise ServiceStartError(
                    f"{service.name} exited during start-up; the end of {service.log_file}:\n"
                    + tail(service.log_file)
                )
            probe = service.probe(timeout_s=1.0)
            if probe.answers:
                progress(
                    f"{service.name}: answers after {time.monotonic() - started:.1f}s "
                    f"({probe.detail})"
                )
                del pending[service]
        if pending and time.monotonic() > deadline:
            names = ", ".join(service.name for service in pending)
            raise ServiceStartError(
                f"{names} did not answer within {timeout_s:.0f}s; see "
                + ", ".join(str(service.log_file) for service in pending)
            )
        if pending:
            time.sleep(0.25)


def up(settings: DevStackSettings, progress: Progress) -> list[ServiceStatus]:
    """Starts every service that is not running, stage by stage, and waits until all answer.

    Servers (stage 0) start together and are initialized (topics, database; when secured,
    the security policy is applied to Kafka and Mosquitto) before the platform's own
    processes (stage 1), which need them, start.
    """
    previous = os.umask(PRIVATE_UMASK)  # config files, pid files, folders of ours: private
    try:
        _up(settings, progress)
    finally:
        os.umask(previous)
    return status(settings)


def _up(settings: DevStackSettings, progress: Progress) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    # Others may pass through (a service user reaches its own 0700 folder), never list or read.
    settings.state_dir.chmod(0o711)
    stack = services(settings)
    for stage in sorted({service.stage for service in stack}):
        members = [service for service in stack if service.stage == stage]
        to_wait: dict[Service, int | None] = {}
        for service in members:
            pid = _start(service, progress)
            if pid is not None or not service.probe(timeout_s=1.0).answers:
                to_wait[service] = pid
            else:
                progress(f"{service.name}: already running")
        _await(to_wait, settings.start_timeout_s, progress)
        for service in members:
            service.after_start(progress)
        if stage == 0 and settings.secure:
            _apply_policy(settings, progress)


def _apply_policy(settings: DevStackSettings, progress: Progress) -> None:
    """``iotctl policy apply`` on the servers that just started (secured mode)."""
    progress("applying the security policy (Kafka users and ACLs, MQTT logins and ACLs)")
    try:
        report = SecuredStack(settings).apply(progress=progress)
    except (PolicyError, SecurityError) as exc:
        raise ServiceStartError(f"the security policy was not applied: {exc}") from exc
    for warning in report.warnings:
        progress(f"warning: {warning}")


def down(settings: DevStackSettings, progress: Progress) -> list[str]:
    """Stops, in reverse start order, every service process ``up`` started; names them.
    The Kafka nodes stop together (a node left alone waits for its lost quorum)."""
    batches: list[list[Service]] = []
    for service in reversed(services(settings, every_kind=True)):
        if isinstance(service, Kafka) and batches and isinstance(batches[-1][0], Kafka):
            batches[-1].append(service)
        else:
            batches.append([service])
    stopped = []
    for batch in batches:
        for service, was_running in zip(
            batch, stop_together([s.handle for s in batch]), strict=True
        ):
            if was_running:
                progress(f"{service.name}: stopped")
                stopped.append(service.name)
            else:
                progress(f"{service.name}: was not running")
    return stopped


def status(settings: DevStackSettings) -> list[ServiceStatus]:
    """Each service's endpoint, pid and whether it answers its own protocol."""
    report = []
    enabled = {service.name for service in services(settings)}
    for service in services(settings, every_kind=True):
        pid = running_pid_of(service)
        if service.name not in enabled and pid is None:
            continue
        probe = service.probe()
        detail = probe.detail
        if probe.answers and pid is None:
            detail += " (not started by iotctl dev up)"
        report.append(
            ServiceStatus(
                name=service.name,
                endpoint=service.endpoint,
                pid=pid,
                answers=probe.answers,
                detail=detail,
                log_file=str(service.log_file),
            )
        )
    return report
