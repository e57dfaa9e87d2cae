"""A telemetry record's value as a domain event: the one decoding rule that the worker, the
query API and replay share, so a record that one of them passes over as undecodable is
undecodable for all of them.

* Records are read through a **reader schema**, the newest telemetry version this code knows:
  a record written with any version the subject's mode (FULL_TRANSITIVE) admits decodes,
  with defaults for fields its writer did not have.
* A registry that is **unavailable or slow** is waited for (with backoff), never taken for an
  undecodable record: passing over would commit the offset and lose the record for good.
  Only what fails the same way every time (a bad frame, an id the registry does not have,
  data no reader can resolve) is undecodable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from functools import cache
from typing import Any

from contracts.avro import HEADER_SIZE, AvroError, AvroSchema, SchemaCatalog, peek_schema_id
from contracts.avro import decode as avro_decode
from contracts.registry.cache import SchemaCache
from contracts.registry.errors import RegistryError
from contracts.topics import TELEMETRY
from streams.domain import TelemetryEvent

__all__ = [
    "UNDECODABLE",
    "decode_telemetry",
    "learn_schema",
    "learn_schemas",
    "read_telemetry",
    "telemetry_event",
    "telemetry_reader",
]

log = logging.getLogger("streams.decoding")

UNDECODABLE = (AvroError, RegistryError, ValueError, KeyError, TypeError)
"""What decoding a record as telemetry raises for a record that is not telemetry (never a
retriable registry error: those are waited out)."""

RETRY_MAX_S = 5.0

_new_tuple = tuple.__new__  # builds the named tuple without its Python-level __new__

OnRetry = Callable[[BaseException], None]


@cache
def telemetry_reader() -> AvroSchema:
    """The reader schema: the newest version of the telemetry subject in the catalog."""
    return SchemaCatalog.load().latest(f"{TELEMETRY.name}-value")


async def learn_schema(
    registry: SchemaCache, schema_id: int, on_retry: OnRetry | None = None
) -> None:
    """Makes ``schema_id`` known, waiting out an unavailable or slow registry (``on_retry``
    is told each time); raises the registry's error when it fails for good."""
    delay = 0.1
    while True:
        try:
            await registry.ensure_id(schema_id)
        except RegistryError as exc:
            if not exc.retriable:
                raise
            if on_retry is not None:
                on_retry(exc)
            log.warning("schema id %d: registry unavailable (%s), retrying", schema_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
        else:
            return


async def learn_schemas(
    registry: SchemaCache, frames: Iterable[bytes | None], on_retry: OnRetry | None = None
) -> None:
    """Makes the writer schemas of ``frames`` known, each once (a whole fetch's records
    usually share one), waiting out an unavailable registry; then :func:`read_telemetry`
    decodes them without I/O. A bad header or an id the registry does not have is left for
    :func:`read_telemetry` to reject as undecodable."""
    headers = {(frame or b"")[:HEADER_SIZE] for frame in frames}
    ids: set[int] = set()
    for header in headers:
        with contextlib.suppress(AvroError):
            ids.add(peek_schema_id(header))
    for schema_id in ids:
        if registry.writer_schema(schema_id) is None:
            with contextlib.suppress(*UNDECODABLE):
                await learn_schema(registry, schema_id, on_retry)


async def decode_telemetry(
    registry: SchemaCache, value: bytes | None, on_retry: OnRetry | None = None
) -> TelemetryEvent:
    """A record's value as a telemetry event; raises one of ``UNDECODABLE`` if it is not one."""
    frame = value or b""
    schema_id = peek_schema_id(frame)
    if registry.writer_schema(schema_id) is None:
        await learn_schema(registry, schema_id, on_retry)
    return read_telemetry(registry, frame)


def read_telemetry(registry: SchemaCache, frame: bytes) -> TelemetryEvent:
    """``frame`` as a telemetry event, its writer schema already known (no I/O)."""
    return telemetry_event(avro_decode(frame, registry, reader=telemetry_reader()))


def telemetry_event(record: dict[str, Any]) -> TelemetryEvent:
    """The domain event for a decoded ``Telemetry`` record."""
    get = record.get
    return _new_tuple(
        TelemetryEvent,
        (
            record["event_id"],
            record["device_id"],
            record["ts"],
            record["received_at"],
            get("seq"),
            record["metrics"],
            get("attributes") or {},
            get("boot"),
            get("ts_stamped", False),
        ),
    )
