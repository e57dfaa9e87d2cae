"""The SchemaRegistry contract, run against the in-memory registry and the REST client over it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.registry import (
    ConfluentSchemaRegistry,
    MemorySchemaRegistry,
    SchemaRegistry,
    start_server,
)
from tests.contracts.registry import (
    RegistryContract,
)

LOGIN = ("registry-admin", "s3cret-for-tests")


class TestMemoryRegistry(RegistryContract):
    @pytest.fixture
    async def registry(self) -> AsyncIterator[SchemaRegistry]:
        async with MemorySchemaRegistry() as registry:
            yield registry


class TestRestClientOverMemoryServer(RegistryContract):
    @pytest.fixture
    async def registry(self) -> AsyncIterator[SchemaRegistry]:
        async with MemorySchemaRegistry() as backend:
            runner, url = await start_server(backend, port=0, login=LOGIN)
            try:
                async with ConfluentSchemaRegistry(url, auth=LOGIN) as client:
                    yield client
            finally:
                await runner.cleanup()
