"""The shape every local service has: prepare its files, run one process, answer a probe."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.process import LaunchSpec, ProcessHandle
from devstack.settings import DevStackSettings

Progress = Callable[[str], None]
"""Receives one human-readable line about long-running work."""


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether a service answered a real protocol request, and what it said."""

    answers: bool
    detail: str


class Service(ABC):
    """One local server process (Kafka, Mosquitto, PostgreSQL).

    ``prepare`` is idempotent and does first-run work (fetching, formatting, config files);
    ``launch`` says how to run it and ``handle`` how to find and stop it; ``probe`` speaks the
    service's own protocol; ``after_start`` runs once it answers (create databases, topics)
    and is idempotent too.
    """

    name: str
    stage = 0
    """Start order: every service of a stage answers before the next stage starts."""
    listens = True
    """Whether the service binds ``port`` (so a taken port means someone else is there)."""

    def __init__(self, settings: DevStackSettings) -> None:
        self.settings = settings

    @property
    def address(self) -> str:
        """Where the service listens: its own host's address, or the stack's ``host``."""
        return self.settings.address_of(self.name)

    @property
    def home(self) -> Path:
        """This service's folder under the state dir, with links resolved (see ``accounts``)."""
        return (self.settings.state_dir / self.name).resolve()

    @property
    def pid_file(self) -> Path:
        return self.settings.state_dir / "run" / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.settings.state_dir / "logs" / f"{self.name}.log"

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    @abstractmethod
    def endpoint(self) -> str: ...

    @abstractmethod
    def prepare(self, progress: Progress) -> None: ...

    @property
    @abstractmethod
    def handle(self) -> ProcessHandle:
        """Finds the running process again (pid file + a command-line marker) and stops it."""

    @abstractmethod
    def launch(self) -> LaunchSpec:
        """The command that runs the service; valid once ``prepare`` has run."""

    @abstractmethod
    def probe(self, timeout_s: float = 2.0) -> Probe: ...

    def after_start(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Runs after the service answers; nothing by default."""

    @property
    def env_port_variable(self) -> str:
        """The ``IOT_*`` variable that moves this service to another port."""
        return f"IOT_{self.name.upper()}_PORT"
