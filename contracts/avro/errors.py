"""Errors of the Avro package: one root, one class per thing that can be wrong.

Every class carries a machine-readable ``reason`` (a short snake_case string, stable across
releases) for DLQ headers and metric labels; the message says what was wrong and, for bad
frames, at which byte offset of the frame. None of these errors is retriable: the same bytes or
the same schema fail the same way every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from contracts.errors import ContractsError

Direction = Literal["backward", "forward"]
"""Which side of a compatibility check reads: the new schema (backward) or the old ones."""


@dataclass(frozen=True, slots=True)
class Incompatibility:
    """One reason a reader schema cannot read a writer schema's data.

    ``path`` is the dotted field path in the reader schema ("" for the top-level type),
    ``reason`` one of the avro checker's incompatibility types (``type_mismatch``,
    ``reader_field_missing_default_value``, ``missing_union_branch``, ``missing_enum_symbols``,
    ``name_mismatch``, ``fixed_size_mismatch``). In a mode check, ``version`` is the 1-based
    position in the history of the other schema and ``direction`` says which side reads.
    """

    path: str
    reason: str
    message: str
    version: int | None = None
    direction: Direction | None = None

    def describe(self) -> str:
        """One line naming the field, the reason and, in a mode check, the other version."""
        where = f"field {self.path!r}" if self.path else "top-level type"
        text = f"{where}: {self.reason}: {self.message}"
        if self.version is not None:
            side = "new schema reading" if self.direction == "backward" else "reading new with"
            text += f" ({side} version {self.version})"
        return text


class AvroError(ContractsError):
    """Root of every error raised by :mod:`contracts.avro`."""

    reason: ClassVar[str] = "avro_error"
    retriable: ClassVar[bool] = False


class SchemaParseError(AvroError):
    """A schema is not valid Avro (bad JSON, unknown type, invalid default, ...)."""

    reason = "schema_invalid"


class CatalogError(AvroError):
    """``schemas/`` is inconsistent: missing file, bad ``subjects.yaml``, gap in versions."""

    reason = "catalog_invalid"


class IncompatibleSchemaError(AvroError):
    """A new schema version breaks the subject's compatibility mode.

    ``incompatibilities`` lists every violation found; the message names the first field and
    the reason.
    """

    reason = "schema_incompatible"

    def __init__(self, message: str, incompatibilities: Sequence[Incompatibility]) -> None:
        super().__init__(message)
        self.incompatibilities: tuple[Incompatibility, ...] = tuple(incompatibilities)


class SerdeError(AvroError):
    """A frame could not be decoded, or a record could not be encoded.

    ``offset`` is the byte offset in the frame where the problem was detected, when known.
    """

    reason = "serde_error"

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


# --- framing -------------------------------------------------------------------------------


class FrameTooShortError(SerdeError):
    """Fewer than 5 bytes: no room for the magic byte and the 4-byte schema id."""

    reason = "frame_too_short"


class BadMagicByteError(SerdeError):
    """The first byte is not 0, so this is not the Confluent wire format."""

    reason = "bad_magic_byte"


class UnknownSchemaIdError(SerdeError):
    """The schema id in the frame is not known to the schema lookup."""

    reason = "unknown_schema_id"

    def __init__(self, message: str, *, schema_id: int) -> None:
        super().__init__(message, offset=1)
        self.schema_id = schema_id


# --- Avro binary body ----------------------------------------------------------------------


class TruncatedDataError(SerdeError):
    """The data ends before the value the writer schema announces is complete."""

    reason = "truncated"


class TrailingBytesError(SerdeError):
    """Bytes remain after the complete value: the frame is longer than its record."""

    reason = "trailing_bytes"


class InvalidVarintError(SerdeError):
    """A zig-zag varint is longer than allowed (10 bytes for long, 5 for int) or out of range."""

    reason = "invalid_varint"


class NegativeLengthError(SerdeError):
    """A string/bytes length or an array/map block byte size is negative."""

    reason = "negative_length"


class InvalidBlockSizeError(SerdeError):
    """An array/map block's byte size does not match the bytes its items occupy."""

    reason = "invalid_block_size"


class InvalidUnionIndexError(SerdeError):
    """A union branch index is negative or not below the number of branches."""

    reason = "invalid_union_index"


class InvalidEnumIndexError(SerdeError):
    """An enum index is negative or not below the number of symbols."""

    reason = "invalid_enum_index"


class InvalidBooleanError(SerdeError):
    """A boolean byte is neither 0 nor 1."""

    reason = "invalid_boolean"


class InvalidUtf8Error(SerdeError):
    """A string (or map key) is not valid UTF-8."""

    reason = "invalid_utf8"


class LimitExceededError(SerdeError):
    """A configured limit (frame size, total collection items, nesting depth) was exceeded."""

    reason = "limit_exceeded"


class SchemaResolutionError(SerdeError):
    """Well-formed data that the requested reader schema cannot read (incompatible schemas)."""

    reason = "schema_resolution"


class RecordInvalidError(SerdeError):
    """Encode side: the record does not match the writer schema."""

    reason = "record_invalid"
