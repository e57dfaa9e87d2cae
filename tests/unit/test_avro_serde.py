"""The Confluent-framed Avro serde: round trips, hostile input, interop with the avro package."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contracts.avro import (
    HEADER_SIZE,
    AvroSchema,
    BadMagicByteError,
    DecodeLimits,
    FrameTooShortError,
    InvalidBlockSizeError,
    InvalidBooleanError,
    InvalidEnumIndexError,
    InvalidUnionIndexError,
    InvalidUtf8Error,
    InvalidVarintError,
    LimitExceededError,
    NegativeLengthError,
    RecordInvalidError,
    RegisteredSchema,
    SchemaCatalog,
    SchemaResolutionError,
    SerdeError,
    TrailingBytesError,
    TruncatedDataError,
    UnknownSchemaIdError,
    decode,
    encode,
    parse_schema,
    peek_schema_id,
)
from tests.fakes import InMemorySchemas

TELEMETRY_SUBJECT = "iot.telemetry.v1-value"
CATALOG = SchemaCatalog.load()
TELEMETRY_V1, TELEMETRY_V2, TELEMETRY_V3 = (v.schema for v in CATALOG.versions(TELEMETRY_SUBJECT))

# Every Avro type, named references, a recursive record, zero-byte items and a logical type.
KITCHEN_SINK = parse_schema(
    {
        "type": "record",
        "name": "Sink",
        "namespace": "test.avro",
        "fields": [
            {"name": "flag", "type": "boolean"},
            {"name": "small", "type": "int"},
            {"name": "big", "type": "long"},
            {"name": "ratio", "type": "float"},
            {"name": "value", "type": "double"},
            {"name": "blob", "type": "bytes"},
            {"name": "text", "type": "string"},
            {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
            {
                "name": "color",
                "type": {"type": "enum", "name": "Color", "symbols": ["RED", "GREEN", "BLUE"]},
            },
            {"name": "nothing", "type": {"type": "array", "items": "null"}},
            {
                "name": "points",
                "type": {
                    "type": "array",
                    "items": {
                        "type": "record",
                        "name": "Point",
                        "fields": [{"name": "x", "type": "int"}, {"name": "y", "type": "int"}],
                    },
                },
            },
            {
                "name": "tags",
                "type": {"type": "map", "values": ["null", "string", "long", "Point"]},
            },
            {
                "name": "matrix",
                "type": {"type": "array", "items": {"type": "array", "items": "double"}},
            },
            {
                "name": "chain",
                "type": [
                    "null",
                    {
                        "type": "record",
                        "name": "Link",
                        "fields": [
                            {"name": "n", "type": "long"},
                            {"name": "next", "type": ["null", "Link"]},
                        ],
                    },
                ],
            },
            {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
            {
                "name": "empties",
                "type": {
                    "type": "array",
                    "items": {"type": "record", "name": "Empty", "fields": []},
                },
            },
        ],
    }
)

REGISTRY = InMemorySchemas()
TELEMETRY = REGISTRY.register(TELEMETRY_SUBJECT, TELEMETRY_V2)
TELEMETRY_OLD = REGISTRY.register(TELEMETRY_SUBJECT, TELEMETRY_V1)
SINK = REGISTRY.register("test.sink-value", KITCHEN_SINK)

TELEMETRY_RECORD: dict[str, Any] = {
    "event_id": "sensor-0042:1234",
    "device_id": "sensor-0042",
    "ts": 1714564800123,
    "received_at": 1714564800187,
    "seq": 1234,
    "metrics": {
        "temperature": 21.5,
        "humidity": 40.25,
        "pressure": 1013.2,
        "battery": 3.71,
        "rssi": -67.0,
    },
    "attributes": {"fw": "1.4.2"},
}

# --- strategies -----------------------------------------------------------------------------

int64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
doubles = st.floats(allow_nan=False)

telemetry_records = st.fixed_dictionaries(
    {
        "event_id": st.text(max_size=40),
        "device_id": st.text(max_size=40),
        "ts": int64,
        "received_at": int64,
        "seq": st.none() | int64,
        "metrics": st.dictionaries(st.text(max_size=20), doubles, max_size=8),
        "attributes": st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=4),
    }
)

points = st.fixed_dictionaries({"x": int32, "y": int32})


def links(depth: int) -> st.SearchStrategy[Any]:
    tail = st.none() if depth == 0 else st.none() | links(depth - 1)
    return st.fixed_dictionaries({"n": int64, "next": tail})


sink_records = st.fixed_dictionaries(
    {
        "flag": st.booleans(),
        "small": int32,
        "big": int64,
        "ratio": st.floats(allow_nan=False, width=32),
        "value": doubles,
        "blob": st.binary(max_size=20),
        "text": st.text(max_size=20),
        "digest": st.binary(min_size=4, max_size=4),
        "color": st.sampled_from(["RED", "GREEN", "BLUE"]),
        "nothing": st.lists(st.none(), max_size=5),
        "points": st.lists(points, max_size=3),
        "tags": st.dictionaries(
            st.text(max_size=8), st.none() | st.text(max_size=8) | int64 | points, max_size=4
        ),
        "matrix": st.lists(st.lists(doubles, max_size=3), max_size=3),
        "chain": st.none() | links(3),
        "when": int64,
        "empties": st.lists(st.just({}), max_size=3),
    }
)


def fastavro_decode(schema: AvroSchema, body: bytes) -> Any:
    """fastavro alone, trusting the bytes (reference for differential checks)."""
    return fastavro.schemaless_reader(io.BytesIO(body), schema.resolving, None)


# --- round trips ------------------------------------------------------------------------------


def test_telemetry_round_trip_and_framing() -> None:
    frame = encode(TELEMETRY_RECORD, TELEMETRY)
    assert frame[0] == 0
    assert int.from_bytes(frame[1:5], "big") == TELEMETRY.schema_id
    assert peek_schema_id(frame) == TELEMETRY.schema_id
    assert decode(frame, REGISTRY) == TELEMETRY_RECORD


@given(telemetry_records)
def test_telemetry_records_round_trip(record: dict[str, Any]) -> None:
    assert decode(encode(record, TELEMETRY), REGISTRY) == record


@given(sink_records)
def test_every_avro_type_round_trips_and_matches_fastavro(record: dict[str, Any]) -> None:
    frame = encode(record, SINK)
    assert decode(frame, REGISTRY) == record
    assert fastavro_decode(KITCHEN_SINK, frame[HEADER_SIZE:]) == record


def test_timestamps_encode_from_datetime_and_decode_to_epoch_millis() -> None:
    ts = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
    frame = encode({**TELEMETRY_RECORD, "ts": ts}, TELEMETRY)
    assert decode(frame, REGISTRY)["ts"] == 1714564800123


def test_decode_accepts_bytearray_and_memoryview() -> None:
    frame = encode(TELEMETRY_RECORD, TELEMETRY)
    assert decode(bytearray(frame), REGISTRY) == TELEMETRY_RECORD
    assert decode(memoryview(frame), REGISTRY) == TELEMETRY_RECORD


def test_registry_ids_are_global_per_schema_and_stable() -> None:
    registry = InMemorySchemas()
    first = registry.register("a-value", TELEMETRY_V2)
    assert registry.register("b-value", TELEMETRY_V2).schema_id == first.schema_id
    assert registry.register("a-value", TELEMETRY_V1).schema_id == first.schema_id + 1
    assert registry.schema_id("c-value", TELEMETRY_V2) is None  # the fake's own lookup
    assert registry.writer_schema(first.schema_id) is TELEMETRY_V2


def test_schema_id_must_fit_the_header() -> None:
    with pytest.raises(ValueError, match="4 unsigned bytes"):
        RegisteredSchema(2**32, TELEMETRY_V2)


# --- schema resolution ------------------------------------------------------------------------


def test_new_reader_fills_the_default_for_old_data() -> None:
    old = {k: v for k, v in TELEMETRY_RECORD.items() if k != "attributes"}
    frame = encode(old, TELEMETRY_OLD)
    assert decode(frame, REGISTRY, reader=TELEMETRY_V2) == {**old, "attributes": {}}


def test_old_reader_drops_the_new_field() -> None:
    frame = encode(TELEMETRY_RECORD, TELEMETRY)
    old = {k: v for k, v in TELEMETRY_RECORD.items() if k != "attributes"}
    assert decode(frame, REGISTRY, reader=TELEMETRY_V1) == old


def test_unreadable_data_is_a_resolution_error() -> None:
    reader = parse_schema(
        {**TELEMETRY_V2.definition, "fields": [{"name": "firmware", "type": "string"}]}
    )
    with pytest.raises(SchemaResolutionError) as info:
        decode(encode(TELEMETRY_RECORD, TELEMETRY), REGISTRY, reader=reader)
    assert info.value.reason == "schema_resolution"


def test_resolution_path_validates_before_fastavro() -> None:
    frame = encode(TELEMETRY_RECORD, TELEMETRY)
    with pytest.raises(TruncatedDataError):
        decode(frame[:-3], REGISTRY, reader=TELEMETRY_V1)
    with pytest.raises(TrailingBytesError):
        decode(frame + b"\x00", REGISTRY, reader=TELEMETRY_V1)


# --- encode errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "record"),
    [
        (TELEMETRY, {k: v for k, v in TELEMETRY_RECORD.items() if k != "device_id"}),
        (TELEMETRY, {**TELEMETRY_RECORD, "ts": "yesterday"}),
        (TELEMETRY, {**TELEMETRY_RECORD, "seq": 2**64}),
        (TELEMETRY, {**TELEMETRY_RECORD, "metrics": {"t": "hot"}}),
        (TELEMETRY, {**TELEMETRY_RECORD, "device_id": "\ud800"}),
    ],
    ids=["missing-field", "wrong-type", "long-overflow", "map-value-type", "lone-surrogate"],
)
def test_encode_rejects_records_that_do_not_match(
    writer: RegisteredSchema, record: dict[str, Any]
) -> None:
    with pytest.raises(RecordInvalidError) as info:
        encode(record, writer)
    assert info.value.reason == "record_invalid"


@pytest.mark.parametrize(
    "change",
    [{"small": 2**31}, {"small": -(2**31) - 1}, {"digest": b"12345"}],
    ids=["int-too-big", "int-too-small", "fixed-wrong-size"],
)
def test_encode_never_emits_what_decode_rejects(change: dict[str, Any]) -> None:
    """fastavro writes these silently; the serde re-checks its output for such schemas."""
    record = {**_sink_example(), **change}
    with pytest.raises(RecordInvalidError):
        encode(record, SINK)


def _sink_example() -> dict[str, Any]:
    return {
        "flag": True,
        "small": 7,
        "big": -(2**40),
        "ratio": 0.5,
        "value": 2.25,
        "blob": b"\x00\xff",
        "text": "héllo",
        "digest": b"abcd",
        "color": "BLUE",
        "nothing": [None, None],
        "points": [{"x": 1, "y": -1}],
        "tags": {"a": None, "b": "x", "c": 5, "d": {"x": 0, "y": 0}},
        "matrix": [[1.0], []],
        "chain": {"n": 1, "next": {"n": 2, "next": None}},
        "when": 0,
        "empties": [{}, {}],
    }


# --- the specification's rejection cases ------------------------------------------------------


def _schema(field_type: Any) -> RegisteredSchema:
    schema = parse_schema(
        {
            "type": "record",
            "name": "R",
            "namespace": "test.reject",
            "fields": [{"name": "f", "type": field_type}],
        }
    )
    return REGISTRY.register("test.reject-value", schema)


LONG = _schema("long")
INT = _schema("int")
STRING = _schema("string")
BYTES = _schema("bytes")
BOOLEAN = _schema("boolean")
DOUBLE = _schema("double")
FIXED = _schema({"type": "fixed", "name": "Four", "size": 4})
UNION = _schema(["null", "string"])
ENUM = _schema({"type": "enum", "name": "E", "symbols": ["A", "B"]})
NULLS = _schema({"type": "array", "items": "null"})
LONGS = _schema({"type": "array", "items": "long"})
STRING_MAP = _schema({"type": "map", "values": "string"})
LIST = _schema(
    {
        "type": "record",
        "name": "Node",
        "fields": [{"name": "next", "type": ["null", "Node"]}],
    }
)


def _frame(writer: RegisteredSchema, body: bytes) -> bytes:
    return writer.header + body


def _zigzag(value: int) -> bytes:
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


REJECTIONS: list[tuple[str, bytes, type[SerdeError], str]] = [
    ("empty frame", b"", FrameTooShortError, "frame_too_short"),
    ("4-byte frame", b"\x00\x00\x00\x00", FrameTooShortError, "frame_too_short"),
    ("magic byte 1", b"\x01" + LONG.header[1:] + b"\x02", BadMagicByteError, "bad_magic_byte"),
    ("json instead of avro", b'{"device_id": 1}', BadMagicByteError, "bad_magic_byte"),
    ("unknown schema id", b"\x00\x00\x00\xff\xff\x02", UnknownSchemaIdError, "unknown_schema_id"),
    ("header only", _frame(LONG, b""), TruncatedDataError, "truncated"),
    ("varint cut short", _frame(LONG, b"\x80\x80"), TruncatedDataError, "truncated"),
    ("string cut short", _frame(STRING, b"\x0aab"), TruncatedDataError, "truncated"),
    ("double cut short", _frame(DOUBLE, b"\x00\x00\x00"), TruncatedDataError, "truncated"),
    ("fixed cut short", _frame(FIXED, b"abc"), TruncatedDataError, "truncated"),
    (
        "array count > bytes",
        _frame(LONGS, _zigzag(1000) + b"\x02\x02"),
        TruncatedDataError,
        "truncated",
    ),
    ("map count > bytes", _frame(STRING_MAP, _zigzag(2**62)), TruncatedDataError, "truncated"),
    ("string length 2^62", _frame(STRING, _zigzag(2**62) + b"ab"), TruncatedDataError, "truncated"),
    ("trailing byte", _frame(LONG, b"\x02\x00"), TrailingBytesError, "trailing_bytes"),
    ("11-byte varint", _frame(LONG, b"\xff" * 10 + b"\x01"), InvalidVarintError, "invalid_varint"),
    ("varint >= 2^64", _frame(LONG, b"\xff" * 9 + b"\x02"), InvalidVarintError, "invalid_varint"),
    ("6-byte int", _frame(INT, b"\x80" * 5 + b"\x00"), InvalidVarintError, "invalid_varint"),
    ("int >= 2^32", _frame(INT, b"\xff\xff\xff\xff\x1f"), InvalidVarintError, "invalid_varint"),
    ("string length -1", _frame(STRING, _zigzag(-1)), NegativeLengthError, "negative_length"),
    (
        "bytes length -2^63",
        _frame(BYTES, _zigzag(-(2**63))),
        NegativeLengthError,
        "negative_length",
    ),
    (
        "block byte size -1",
        _frame(LONGS, _zigzag(-1) + _zigzag(-1) + b"\x02\x00"),
        NegativeLengthError,
        "negative_length",
    ),
    (
        "block byte size wrong",
        _frame(LONGS, _zigzag(-1) + _zigzag(2) + b"\x02\x00\x00"),
        InvalidBlockSizeError,
        "invalid_block_size",
    ),
    (
        "union index 2 of 2",
        _frame(UNION, _zigzag(2)),
        InvalidUnionIndexError,
        "invalid_union_index",
    ),
    ("union index -1", _frame(UNION, _zigzag(-1)), InvalidUnionIndexError, "invalid_union_index"),
    ("enum index 2 of 2", _frame(ENUM, _zigzag(2)), InvalidEnumIndexError, "invalid_enum_index"),
    ("enum index -1", _frame(ENUM, _zigzag(-1)), InvalidEnumIndexError, "invalid_enum_index"),
    ("boolean byte 2", _frame(BOOLEAN, b"\x02"), InvalidBooleanError, "invalid_boolean"),
    ("utf-8 invalid start", _frame(STRING, b"\x04\xff\xfe"), InvalidUtf8Error, "invalid_utf8"),
    ("utf-8 overlong NUL", _frame(STRING, b"\x04\xc0\x80"), InvalidUtf8Error, "invalid_utf8"),
    ("utf-8 surrogate", _frame(STRING, b"\x06\xed\xa0\x80"), InvalidUtf8Error, "invalid_utf8"),
    (
        "utf-8 map key",
        _frame(STRING_MAP, b"\x02\x02\xff\x00\x00"),
        InvalidUtf8Error,
        "invalid_utf8",
    ),
    (
        "2^62 null items",
        _frame(NULLS, _zigzag(2**62) + b"\x00"),
        LimitExceededError,
        "limit_exceeded",
    ),
    (
        "nulls in many blocks",
        _frame(NULLS, (_zigzag(2**19) * 4) + b"\x00"),
        LimitExceededError,
        "limit_exceeded",
    ),
    (
        "recursion deeper than limit",
        _frame(LIST, b"\x02" * 100 + b"\x00"),
        LimitExceededError,
        "limit_exceeded",
    ),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("frame", "error", "reason"),
    [pytest.param(frame, error, reason, id=name) for name, frame, error, reason in REJECTIONS],
)
def test_rejection_cases(frame: bytes, error: type[SerdeError], reason: str) -> None:
    for reader in (None, TELEMETRY_V1):  # the hot path and the resolution path agree
        with pytest.raises(error) as info:
            decode(frame, REGISTRY, reader=reader)
        assert type(info.value) is error
        assert info.value.reason == reason
        assert str(info.value)


def test_frame_size_limit() -> None:
    frame = _frame(BYTES, _zigzag(2000) + bytes(2000))
    assert decode(frame, REGISTRY) == {"f": bytes(2000)}
    with pytest.raises(LimitExceededError):
        decode(frame, REGISTRY, limits=DecodeLimits(max_frame_bytes=1000))


def test_depth_limit_is_configurable() -> None:
    frame = _frame(LIST, b"\x02" * 100 + b"\x00")
    value = decode(frame, REGISTRY, limits=DecodeLimits(max_depth=150))["f"]
    depth = 0
    while value["next"] is not None:
        value, depth = value["next"], depth + 1
    assert depth == 100


def test_deeply_nested_schemas_compile_and_decode() -> None:
    nested: Any = "long"
    value: Any = 5
    for depth in range(40):
        nested = [{"type": "array", "items": nested}, {"type": "map", "values": nested}][depth % 2]
        value = [value] if depth % 2 == 0 else {"k": value}
    writer = REGISTRY.register("test.nested-value", parse_schema(nested))
    assert decode(encode(value, writer), REGISTRY) == value


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "string"}, "device-1"),
        (["null", "long", "string"], "x"),
        ({"type": "enum", "name": "Top", "symbols": ["A", "B"]}, "B"),
        ({"type": "fixed", "name": "Top2", "size": 3}, b"abc"),
        (
            [
                "null",
                {
                    "type": "record",
                    "name": "Top3",
                    "fields": [{"name": "next", "type": ["null", "Top3"]}],
                },
            ],
            {"next": {"next": None}},
        ),
    ],
    ids=["string", "union", "enum", "fixed", "union-of-recursive-record"],
)
def test_top_level_schemas_need_not_be_records(schema: Any, value: Any) -> None:
    writer = REGISTRY.register("test.top-key", parse_schema(schema))
    assert decode(encode(value, writer), REGISTRY) == value


def test_negative_block_counts_with_sizes_are_valid() -> None:
    body = _zigzag(-2) + _zigzag(2) + _zigzag(5) + _zigzag(-3) + b"\x00"
    assert decode(_frame(LONGS, body), REGISTRY) == {"f": [5, -3]}


def test_padded_varints_within_range_are_accepted() -> None:
    assert decode(_frame(LONG, b"\x82\x80\x80\x00"), REGISTRY) == {"f": 1}


@pytest.mark.parametrize(
    ("writer", "body"),
    [(LONG, b"\xff" * 12 + b"\x01"), (ENUM, _zigzag(-1)), (BOOLEAN, b"\x05")],
    ids=["overlong-varint", "negative-enum-index", "boolean-5"],
)
def test_fastavro_alone_accepts_what_the_spec_rejects(
    writer: RegisteredSchema, body: bytes
) -> None:
    """Why the serde validates: fastavro returns a value for each of these frames."""
    fastavro_decode(writer.schema, body)
    with pytest.raises(SerdeError):
        decode(_frame(writer, body), REGISTRY)


# --- fuzzing ----------------------------------------------------------------------------------

FUZZ_TARGETS = [TELEMETRY, SINK, LIST, NULLS, STRING_MAP]


REASONS = {
    cls.reason
    for cls in (
        BadMagicByteError,
        FrameTooShortError,
        InvalidBlockSizeError,
        InvalidBooleanError,
        InvalidEnumIndexError,
        InvalidUnionIndexError,
        InvalidUtf8Error,
        InvalidVarintError,
        LimitExceededError,
        NegativeLengthError,
        SchemaResolutionError,
        TrailingBytesError,
        TruncatedDataError,
        UnknownSchemaIdError,
    )
}


def _decode_or_reject(frame: bytes, reader: AvroSchema | None = None) -> Any:
    """The decoded value, or the SerdeError it raised (anything else fails the test)."""
    try:
        value = decode(frame, REGISTRY, reader=reader, limits=DecodeLimits(max_items=10_000))
    except SerdeError as exc:
        event(f"rejected: {exc.reason}")
        return exc
    event("accepted")
    return value


def _check_accepted_matches_fastavro(writer: RegisteredSchema, frame: bytes, result: Any) -> None:
    """Accepted frames decode alike in fastavro; the checker alone gives the same verdict."""
    verdict: type[SerdeError] | None = None
    try:
        writer.schema.check_binary(frame, HEADER_SIZE, DecodeLimits(max_items=10_000))
    except SerdeError as exc:
        verdict = type(exc)
    assert verdict is (type(result) if isinstance(result, SerdeError) else None)
    if isinstance(result, SerdeError):
        assert result.reason in REASONS
        assert str(result)
    else:  # repr: NaN payloads are decoded too, and NaN != NaN
        assert repr(fastavro_decode(writer.schema, frame[HEADER_SIZE:])) == repr(result)


@pytest.mark.timeout(60)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FUZZ_TARGETS), st.binary(max_size=300))
def test_arbitrary_bodies_decode_or_raise_serde_errors(
    writer: RegisteredSchema, body: bytes
) -> None:
    frame = writer.header + body
    result = _decode_or_reject(frame)
    _check_accepted_matches_fastavro(writer, frame, result)
    _decode_or_reject(frame, reader=TELEMETRY_V1)


@settings(max_examples=200)
@given(st.binary(max_size=40))
def test_arbitrary_frames_decode_or_raise_serde_errors(frame: bytes) -> None:
    result = _decode_or_reject(frame)
    assert isinstance(result, SerdeError) or peek_schema_id(frame) in (
        TELEMETRY.schema_id,
        SINK.schema_id,
    )


Mutation = Callable[[bytearray], None]


@st.composite
def mutations(draw: st.DrawFn) -> Mutation:
    kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "varint"]))
    at = draw(st.integers(min_value=0, max_value=10_000))
    byte = draw(st.integers(min_value=0, max_value=255))
    big = draw(st.sampled_from([2**31, 2**62, 2**63 - 1, -(2**63), -1, 10**6]))

    def apply(data: bytearray) -> None:
        if len(data) <= HEADER_SIZE:
            return
        i = HEADER_SIZE + at % (len(data) - HEADER_SIZE)
        if kind == "flip":
            data[i] ^= 1 << (byte % 8)
        elif kind == "set":
            data[i] = byte
        elif kind == "insert":
            data.insert(i, byte)
        elif kind == "delete":
            del data[i]
        elif kind == "truncate":
            del data[i:]
        else:
            data[i : i + 1] = _zigzag(big)

    return apply


@pytest.mark.timeout(60)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.lists(mutations(), min_size=1, max_size=4))
def test_mutated_frames_decode_or_raise_serde_errors(
    data: st.DataObject, changes: list[Mutation]
) -> None:
    writer, record = data.draw(
        st.sampled_from(["telemetry", "sink"]).flatmap(
            lambda name: (
                st.tuples(st.just(TELEMETRY), telemetry_records)
                if name == "telemetry"
                else st.tuples(st.just(SINK), sink_records)
            )
        )
    )
    frame = bytearray(encode(record, writer))
    for change in changes:
        change(frame)
    result = _decode_or_reject(bytes(frame))
    _check_accepted_matches_fastavro(writer, bytes(frame), result)
    _decode_or_reject(bytes(frame), reader=TELEMETRY_V1)


# --- interop with the avro package ------------------------------------------------------------


def _avro_package_encode(schema: AvroSchema, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    writer = avro.io.DatumWriter(avro.schema.parse(json.dumps(schema.definition)))
    writer.write(record, avro.io.BinaryEncoder(out))
    return out.getvalue()


def _as_datetimes(record: dict[str, Any]) -> dict[str, Any]:
    """The avro package wants datetimes for timestamp-millis fields."""
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return {
        **record,
        "ts": epoch + dt.timedelta(milliseconds=record["ts"]),
        "received_at": epoch + dt.timedelta(milliseconds=record["received_at"]),
    }


def test_telemetry_bytes_identical_to_the_avro_package() -> None:
    ours = encode(TELEMETRY_RECORD, TELEMETRY)[HEADER_SIZE:]
    assert ours == _avro_package_encode(TELEMETRY_V2, _as_datetimes(TELEMETRY_RECORD))


@settings(max_examples=50)
@given(
    telemetry_records.map(
        lambda r: {**r, "ts": r["ts"] % 2**40, "received_at": r["received_at"] % 2**40}
    )
)
def test_generated_telemetry_bytes_identical_to_the_avro_package(record: dict[str, Any]) -> None:
    ours = encode(record, TELEMETRY)[HEADER_SIZE:]
    assert ours == _avro_package_encode(TELEMETRY_V2, _as_datetimes(record))


def test_avro_package_reads_our_bytes() -> None:
    body = encode(TELEMETRY_RECORD, TELEMETRY)[HEADER_SIZE:]
    schema = avro.schema.parse(json.dumps(TELEMETRY_V2.definition))
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(body)))
    assert decoded == _as_datetimes(TELEMETRY_RECORD)
