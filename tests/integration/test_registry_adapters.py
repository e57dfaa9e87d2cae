"""The SchemaRegistry contract against the real adapters, on the local Kafka.

* the embedded registry (its own log topic per test);
* the Confluent REST client talking to ``server.py`` serving an embedded registry.

(Karapace, the third-party registry we would also like to run this against, is not installable
from PyPI: the package has no release there.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from contracts.registry import (
    ConfluentSchemaRegistry,
    EmbeddedSchemaRegistry,
    SchemaRegistry,
    start_server,
)
from devstack import DevStackSettings
from devstack.clients import kafka_client
from tests.contracts.registry import RegistryContract

LOGIN = ("registry-admin", "s3cret-for-tests")


class TestEmbeddedRegistry(RegistryContract):
    @pytest.fixture
    async def registry(
        self, settings: DevStackSettings, unique: Callable[[str], str]
    ) -> AsyncIterator[SchemaRegistry]:
        topic = unique("schemas")
        async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as registry:
            yield registry


class TestRestClientOverEmbeddedServer(RegistryContract):
    @pytest.fixture
    async def registry(
        self, settings: DevStackSettings, unique: Callable[[str], str]
    ) -> AsyncIterator[SchemaRegistry]:
        topic = unique("schemas")
        async with EmbeddedSchemaRegistry(kafka_client(settings), topic=topic) as backend:
            runner, url = await start_server(backend, port=0, login=LOGIN)
            try:
                async with ConfluentSchemaRegistry(url, auth=LOGIN) as client:
                    yield client
            finally:
                await runner.cleanup()
