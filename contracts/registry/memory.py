"""A registry held in one process's memory: the same state machine, no log.

For unit tests and tools. Nothing is shared with other processes or survives a restart; use
:class:`~contracts.registry.embedded.EmbeddedSchemaRegistry` for a deployment.
"""

from __future__ import annotations

from contracts.registry._base import StateBackedRegistry
from contracts.registry.state import Command, RegistryState, Result

__all__ = ["MemorySchemaRegistry"]


class MemorySchemaRegistry(StateBackedRegistry):
    """Applies each command directly; reads see every completed write at once."""

    def __init__(self) -> None:
        self._state = RegistryState()

    @property
    def state(self) -> RegistryState:
        """The current state (its ``writer_schema``/``schema_id`` serve the serde directly)."""
        return self._state

    async def _read(self) -> RegistryState:
        return self._state

    async def _execute(self, command: Command) -> Result:
        return self._state.apply(command)
