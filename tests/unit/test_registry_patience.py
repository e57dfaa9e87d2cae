"""A gateway or worker started while its registry cannot be reached waits for it.

Found by the fault suite (seed 186630): a gateway restarted while the Kafka node it first
asked was dead exited ("cannot open the schema log ... NodeNotReadyError"), where it should
ride through the outage as it does once running.
"""

from __future__ import annotations

from types import TracebackType

import pytest

from contracts.registry import factory
from contracts.registry.errors import RegistryUnavailableError


class Flaky:
    """A registry that cannot be reached for its first ``failures`` starts."""

    starts = 0
    closed = 0

    def __init__(self, failures: int) -> None:
        self.failures = failures

    async def __aenter__(self) -> Flaky:
        Flaky.starts += 1
        if Flaky.starts <= self.failures:
            raise RegistryUnavailableError("cannot open the schema log: node 1 not ready")
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        Flaky.closed += 1


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> None:
    Flaky.starts = Flaky.closed = 0
    monkeypatch.setattr(factory, "create_registry", lambda *_, **__: Flaky(failures=2))
    monkeypatch.setattr(factory, "FIRST_WAIT_S", 0.01)


@pytest.mark.usefixtures("flaky")
async def test_a_patient_process_waits_for_its_registry() -> None:
    async with factory.open_registry("embedded", "10.77.0.11:9092", patient=True) as cache:
        assert isinstance(cache.registry, Flaky)
        assert Flaky.starts == 3
    assert Flaky.closed == 1


@pytest.mark.usefixtures("flaky")
async def test_a_command_is_told_at_once() -> None:
    with pytest.raises(RegistryUnavailableError, match="node 1 not ready"):
        async with factory.open_registry("embedded", "10.77.0.11:9092"):
            pass
    assert Flaky.starts == 1
