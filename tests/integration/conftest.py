"""Integration tests run against the real local services that `make up` starts."""

from __future__ import annotations

import pytest

from devstack import DevStackSettings, status


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def stack_answers(settings: DevStackSettings) -> None:
    """Fails (never skips) the tier at once when a service is down, saying what to run."""
    down = [f"{item.name} ({item.detail})" for item in status(settings) if not item.answers]
    if down:
        pytest.fail(
            "local services are not answering: " + "; ".join(down) + ". Run `make up` first.",
            pytrace=False,
        )
