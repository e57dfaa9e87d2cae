"""Avro in the Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

Encoding uses fastavro's ``schemaless_writer`` (byte-identical to the ``avro`` package).

Decoding never trusts the bytes. Two paths, chosen per frame:

* **Same schema** (no reader schema, or one with the writer's Parsing Canonical Form): the
  writer schema's compiled reader (see ``_binary``) checks and decodes in one pass. This is
  the hot path; it costs about what fastavro alone costs, so safety is free here.
* **Schema resolution** (reader differs from writer): the compiled checker validates the whole
  frame first, then fastavro decodes it with the reader schema. Pre-scan plus fastavro with
  resolution costs about 2.5 times the hot path (about 15 us for the telemetry record on the
  2-core dev machine, above the 10 us target; see ``bench/results/avro_codec.json``). Accepted:
  resolution only happens while producers and consumers straddle a schema change, and a
  resolver of our own would duplicate fastavro's resolution rules. If it ever matters, the
  fix is to compile resolution into the generated reader, not to drop the pre-scan.

Both paths give the same values for the same bytes: logical types are not converted
(``timestamp-millis`` decodes to ``int`` epoch milliseconds; encode accepts ``int`` or an aware
``datetime``). Any bad frame raises a ``SerdeError`` subclass with a ``reason``; nothing else
escapes, no input hangs or allocates beyond ``DecodeLimits``.

The serde does no I/O: it asks a :class:`WriterSchemas` for the schema of an id, which
answers from memory; a registry adapter that must fetch an unknown id first can read it with
:func:`peek_schema_id`. Producers encode with a :class:`RegisteredSchema` they registered.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import fastavro

from contracts.avro._binary import DecodeLimits
from contracts.avro.errors import (
    BadMagicByteError,
    FrameTooShortError,
    RecordInvalidError,
    SchemaResolutionError,
    SerdeError,
    UnknownSchemaIdError,
)
from contracts.avro.schema import AvroSchema

__all__ = [
    "HEADER_SIZE",
    "MAGIC_BYTE",
    "DecodeLimits",
    "RegisteredSchema",
    "WriterSchemas",
    "decode",
    "encode",
    "peek_schema_id",
]

MAGIC_BYTE = 0
HEADER_SIZE = 5
Frame = bytes | bytearray | memoryview
_MAX_SCHEMA_ID = 2**32 - 1
_DEFAULT_LIMITS = DecodeLimits()
# Re-checking our own output must not fail on size limits meant for untrusted input.
_ENCODE_CHECK_LIMITS = DecodeLimits(max_frame_bytes=2**62, max_items=2**62, max_depth=200)


@dataclass(frozen=True, slots=True)
class RegisteredSchema:
    """A schema together with the id a registry gave it; ``header`` is its 5-byte prefix."""

    schema_id: int
    schema: AvroSchema
    header: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.schema_id <= _MAX_SCHEMA_ID:
            raise ValueError(f"schema id {self.schema_id} does not fit in 4 unsigned bytes")
        header = bytes((MAGIC_BYTE,)) + self.schema_id.to_bytes(4, "big")
        object.__setattr__(self, "header", header)


class WriterSchemas(Protocol):
    """Maps a schema id to the writer schema. Called on every decode: answer from memory."""

    def writer_schema(self, schema_id: int) -> AvroSchema | None:
        """The schema registered under ``schema_id``, or None if it is unknown."""
        ...


def encode(record: Mapping[str, Any], writer: RegisteredSchema) -> bytes:
    """Encodes ``record`` as one Confluent-framed Avro message.

    Deterministic: the same record (same map insertion order) and schema give the same bytes.
    Raises ``RecordInvalidError`` if the record does not match the schema; a frame it returns
    always decodes with the same schema.
    """
    out = io.BytesIO()
    out.write(writer.header)
    try:
        fastavro.schemaless_writer(out, writer.schema.parsed, record)
    except Exception as exc:  # fastavro raises TypeError, ValueError, KeyError, OverflowError...
        raise RecordInvalidError(
            f"record does not match schema {writer.schema.name or writer.schema_id}: {exc}"
        ) from exc
    frame = out.getvalue()
    if writer.schema.check_encoded:  # fastavro writes out-of-range ints and wrong-size fixed
        try:
            writer.schema.check_binary(frame, HEADER_SIZE, _ENCODE_CHECK_LIMITS)
        except SerdeError as exc:
            raise RecordInvalidError(
                f"record does not match schema {writer.schema.name or writer.schema_id}: "
                f"a value is out of range for its type ({exc})"
            ) from exc
    return frame


def peek_schema_id(frame: Frame) -> int:
    """The schema id of a frame, checking only the 5-byte header."""
    if len(frame) < HEADER_SIZE:
        raise FrameTooShortError(
            f"frame has {len(frame)} bytes; the Confluent header alone needs {HEADER_SIZE}",
            offset=0,
        )
    if frame[0] != MAGIC_BYTE:
        raise BadMagicByteError(
            f"first byte is {frame[0]:#04x}, not the Confluent magic byte 0x00", offset=0
        )
    return int.from_bytes(frame[1:HEADER_SIZE], "big")


def decode(
    frame: Frame,
    schemas: WriterSchemas,
    *,
    reader: AvroSchema | None = None,
    limits: DecodeLimits = _DEFAULT_LIMITS,
) -> Any:
    """Decodes one framed message; a dict for record schemas.

    ``reader``, when given, is the schema the caller wants the data in (Avro schema
    resolution from the writer schema named by the frame's id). Raises a ``SerdeError``
    subclass for any bad frame and ``SchemaResolutionError`` when the reader cannot read
    this writer's data; never anything else, in time linear in ``len(frame)``.
    """
    if type(frame) is not bytes:
        frame = bytes(frame)
    schema_id = peek_schema_id(frame)
    writer = schemas.writer_schema(schema_id)
    if writer is None:
        raise UnknownSchemaIdError(f"schema id {schema_id} is not known", schema_id=schema_id)
    if reader is None or reader is writer or reader.canonical == writer.canonical:
        return writer.reader.read(frame, HEADER_SIZE, limits)
    writer.reader.check(frame, HEADER_SIZE, limits)
    body = io.BytesIO(frame)
    body.seek(HEADER_SIZE)
    try:
        return fastavro.schemaless_reader(body, writer.resolving, reader.resolving)
    except Exception as exc:  # the bytes are valid: any failure is a resolution failure
        raise SchemaResolutionError(
            f"data written with schema id {schema_id} ({writer.name}) cannot be read as "
            f"{reader.name}: {exc}"
        ) from exc
