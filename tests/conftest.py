"""Fixtures shared by every test tier."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from contracts.kafka import KafkaClientSettings
from devstack import DevStackSettings
from devstack.clients import kafka_client


@pytest.fixture(scope="session")
def settings() -> DevStackSettings:
    """The dev stack's settings, from the same IOT_* variables `make up` used."""
    return DevStackSettings.from_env()


@pytest.fixture(scope="session")
def kafka_admin(settings: DevStackSettings) -> KafkaClientSettings:
    """How tests connect to the stack's Kafka: as its administrator (SASL when secured)."""
    return kafka_client(settings)


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """Makes names unique to this test (topics, groups, client ids)."""
    token = uuid.uuid4().hex[:10]
    test = request.node.name.split("[")[0].removeprefix("test_")[:30]

    def make(kind: str) -> str:
        return f"t.{test}.{kind}.{token}"

    return make
