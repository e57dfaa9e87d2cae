"""Event contracts on the data path: Avro schemas, the Confluent wire format, evolution rules.

* :mod:`~contracts.avro.schema` - parse and validate schemas (cached, compiled readers);
* :mod:`~contracts.avro.serde` - encode/decode Confluent-framed Avro, safe on hostile bytes;
* :mod:`~contracts.avro.compatibility` - the seven Confluent compatibility modes;
* :mod:`~contracts.avro.catalog` - the versioned schemas kept in ``schemas/``;
* :mod:`~contracts.avro.errors` - one error root, a typed error with a ``reason`` per fault.

No I/O besides reading ``schemas/``: a schema registry plugs in through the
:class:`WriterSchemas` protocol.
"""

from contracts.avro.catalog import (
    HistoryCheck,
    SchemaCatalog,
    SchemaVersion,
    Subject,
    default_schemas_dir,
)
from contracts.avro.compatibility import (
    CompatibilityMode,
    CompatibilityResult,
    check_compatibility,
    reader_writer_incompatibilities,
)
from contracts.avro.errors import (
    AvroError,
    BadMagicByteError,
    CatalogError,
    FrameTooShortError,
    Incompatibility,
    IncompatibleSchemaError,
    InvalidBlockSizeError,
    InvalidBooleanError,
    InvalidEnumIndexError,
    InvalidUnionIndexError,
    InvalidUtf8Error,
    InvalidVarintError,
    LimitExceededError,
    NegativeLengthError,
    RecordInvalidError,
    SchemaParseError,
    SchemaResolutionError,
    SerdeError,
    TrailingBytesError,
    TruncatedDataError,
    UnknownSchemaIdError,
)
from contracts.avro.schema import AvroSchema, parse_schema
from contracts.avro.serde import (
    HEADER_SIZE,
    MAGIC_BYTE,
    DecodeLimits,
    RegisteredSchema,
    WriterSchemas,
    decode,
    encode,
    peek_schema_id,
)

__all__ = [
    "HEADER_SIZE",
    "MAGIC_BYTE",
    "AvroError",
    "AvroSchema",
    "BadMagicByteError",
    "CatalogError",
    "CompatibilityMode",
    "CompatibilityResult",
    "DecodeLimits",
    "FrameTooShortError",
    "HistoryCheck",
    "Incompatibility",
    "IncompatibleSchemaError",
    "InvalidBlockSizeError",
    "InvalidBooleanError",
    "InvalidEnumIndexError",
    "InvalidUnionIndexError",
    "InvalidUtf8Error",
    "InvalidVarintError",
    "LimitExceededError",
    "NegativeLengthError",
    "RecordInvalidError",
    "RegisteredSchema",
    "SchemaCatalog",
    "SchemaParseError",
    "SchemaResolutionError",
    "SchemaVersion",
    "SerdeError",
    "Subject",
    "TrailingBytesError",
    "TruncatedDataError",
    "UnknownSchemaIdError",
    "WriterSchemas",
    "check_compatibility",
    "decode",
    "default_schemas_dir",
    "encode",
    "parse_schema",
    "peek_schema_id",
    "reader_writer_incompatibilities",
]
