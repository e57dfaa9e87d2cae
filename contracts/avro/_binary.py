"""Bounds-checked Avro binary reading, compiled per writer schema.

Why this exists: fastavro trusts its input. Given hostile bytes it hangs or allocates without
bound (an array block of 2**62 ``null`` items), silently accepts over-long or out-of-range
varints, wraps a negative enum index to the last symbol, and reads any non-zero byte as
``True``. The serde must turn every such frame into a typed :class:`SerdeError` instead.

How: the writer schema is compiled once into straight-line Python source (one function per
record type, everything else inlined unless nested very deeply) and ``exec``-ed. Identifiers
in the generated code are counters, never names from the schema; schema strings (field names,
enum symbols) reach the code only as ``repr`` literals or constants, so a schema cannot inject
code. Two variants are compiled from the same generator:

* ``read``: checks and builds the value in one pass (the serde's hot path; on the telemetry
  record it is about as fast as fastavro alone, so validation costs nothing extra);
* ``check``: checks only, for frames that fastavro then decodes with schema resolution.

Guarantees of both, for any input bytes: they return or raise a :class:`SerdeError` subclass;
work is linear in the input size; every length and block count is checked against the bytes
left before anything is allocated; items of zero-byte types (``null``, empty records) and all
collection items together are bounded by ``DecodeLimits.max_items``; record nesting (only
reachable through recursive schemas) by ``max_depth``. Varints are at most 10 bytes (5 for
``int``) and in range; union and enum indexes are in range; booleans are 0 or 1; strings and
map keys are strict UTF-8; block byte sizes match their items.

Logical types are not converted: ``timestamp-millis`` reads as ``int`` epoch milliseconds.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.avro.errors import (
    InvalidBlockSizeError,
    InvalidBooleanError,
    InvalidEnumIndexError,
    InvalidUnionIndexError,
    InvalidUtf8Error,
    InvalidVarintError,
    LimitExceededError,
    NegativeLengthError,
    SerdeError,
    TrailingBytesError,
    TruncatedDataError,
)

__all__ = ["BinaryReader", "DecodeLimits", "compile_reader"]

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_COMPLEX = frozenset({"record", "error", "enum", "fixed", "array", "map"})
_OUTLINE_INDENT = 4 * 10  # nesting depth from which collections and unions get a function
_FIXED_SIZE = {"null": 0, "float": 4, "double": 8}


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds applied to every decoded frame; exceeding one raises ``LimitExceededError``.

    ``max_frame_bytes`` caps the whole frame, ``max_items`` the total number of array items
    and map entries in one frame (this is what bounds zero-byte items), ``max_depth`` the
    nesting of records (only recursive schemas can nest deeper than the schema itself).
    """

    max_frame_bytes: int = 8 * 1024 * 1024
    max_items: int = 1_000_000
    max_depth: int = 64


# --- runtime helpers used by the generated code ----------------------------------------------


def _long(buf: bytes, p: int) -> tuple[int, int]:
    """Slow path of a zig-zag long starting at ``p`` (first byte has the continuation bit)."""
    start = p
    n = buf[p] & 0x7F
    shift = 7
    while True:
        p += 1
        b = buf[p]
        if b < 0x80:
            n |= b << shift
            break
        n |= (b & 0x7F) << shift
        shift += 7
        if shift == 70:
            raise InvalidVarintError(
                f"varint at byte {start} is longer than 10 bytes", offset=start
            )
    if n >> 64:
        raise InvalidVarintError(f"varint at byte {start} is out of the 64-bit range", offset=start)
    return (n >> 1) ^ -(n & 1), p + 1


def _int(buf: bytes, p: int) -> tuple[int, int]:
    """Slow path of a zig-zag int: at most 5 bytes and a 32-bit value."""
    start = p
    n = buf[p] & 0x7F
    shift = 7
    while True:
        p += 1
        b = buf[p]
        if b < 0x80:
            n |= b << shift
            break
        n |= (b & 0x7F) << shift
        shift += 7
        if shift == 35:
            raise InvalidVarintError(f"int at byte {start} is longer than 5 bytes", offset=start)
    if n >> 32:
        raise InvalidVarintError(f"int at byte {start} is out of the 32-bit range", offset=start)
    return (n >> 1) ^ -(n & 1), p + 1


def _e_trunc(p: int, need: int, end: int) -> SerdeError:
    return TruncatedDataError(
        f"value at byte {p} needs {need} bytes but only {end - p} remain", offset=p
    )


def _e_neg(p: int, n: int) -> SerdeError:
    return NegativeLengthError(f"negative length {n} before byte {p}", offset=p)


def _e_union(p: int, i: int, n: int) -> SerdeError:
    return InvalidUnionIndexError(
        f"union branch index {i} before byte {p} is not in [0, {n})", offset=p
    )


def _e_enum(p: int, i: int, n: int) -> SerdeError:
    return InvalidEnumIndexError(f"enum index {i} before byte {p} is not in [0, {n})", offset=p)


def _e_bool(p: int, b: int) -> SerdeError:
    return InvalidBooleanError(f"boolean byte at {p} is {b}, not 0 or 1", offset=p)


def _e_items(p: int) -> SerdeError:
    return LimitExceededError(
        f"block at byte {p} exceeds the limit on array items and map entries per frame",
        offset=p,
    )


def _e_depth(p: int) -> SerdeError:
    return LimitExceededError(f"record nesting at byte {p} exceeds the depth limit", offset=p)


def _e_block(p: int, expected: int, end: int) -> SerdeError:
    if p > end:  # the checker skips fixed-size items without reading: same verdict as a read
        return _e_trunc(end, p - end, end)
    return InvalidBlockSizeError(
        f"block ended at byte {p} but its byte size said {expected}", offset=p
    )


_RUNTIME: dict[str, object] = {
    "_long": _long,
    "_int": _int,
    "_f32": struct.Struct("<f").unpack_from,
    "_f64": struct.Struct("<d").unpack_from,
    "_e_trunc": _e_trunc,
    "_e_neg": _e_neg,
    "_e_union": _e_union,
    "_e_enum": _e_enum,
    "_e_bool": _e_bool,
    "_e_items": _e_items,
    "_e_depth": _e_depth,
    "_e_block": _e_block,
}


# --- the compiler ----------------------------------------------------------------------------


class _Compiler:
    """Turns a fastavro-parsed schema into Python source; see the module docstring."""

    def __init__(self, named: Mapping[str, Any], values: bool) -> None:
        self.named = named
        self.values = values
        self.consts: dict[str, object] = {}
        self.funcs: list[list[str]] = []
        self.record_fn: dict[str, str] = {}
        self.counter = itertools.count()
        self.min_sizes: dict[str, int] = {}

    def fresh(self, prefix: str) -> str:
        return f"{prefix}{next(self.counter)}"

    def resolve(self, node: Any) -> Any:
        """Follow named-type references and ``{"type": <schema>}`` wrappers."""
        while True:
            if isinstance(node, str):
                if node in _PRIMITIVES:
                    return node
                node = self.named[node]
            elif isinstance(node, dict):
                kind = node["type"]
                if isinstance(kind, str) and (kind in _PRIMITIVES or kind in _COMPLEX):
                    return node
                node = kind
            else:
                return node

    @staticmethod
    def kind(node: Any) -> str:
        if isinstance(node, str):
            return node
        if isinstance(node, list):
            return "union"
        return str(node["type"])

    def min_size(self, node: Any, active: frozenset[str] = frozenset()) -> int:
        """A lower bound of the encoded size in bytes (what bounds a block count)."""
        node = self.resolve(node)
        kind = self.kind(node)
        if kind in _FIXED_SIZE:
            return _FIXED_SIZE[kind]
        if kind == "fixed":
            return int(node["size"])
        if kind in ("record", "error"):
            name = node["name"]
            if name in active:
                return 0
            if name not in self.min_sizes:
                inner = active | {name}
                self.min_sizes[name] = sum(self.min_size(f["type"], inner) for f in node["fields"])
            return self.min_sizes[name]
        return 1  # boolean, varints, length-prefixed, enum, union index, collection terminator

    # Each emitter appends lines reading one value at ``p`` into ``target`` (when building).

    def emit(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        node = self.resolve(node)
        kind = self.kind(node)
        if len(ind) > _OUTLINE_INDENT and kind in ("array", "map", "union"):
            self.emit_outlined(node, target, ind, out)
        else:
            getattr(self, f"emit_{kind}")(node, target, ind, out)

    def emit_outlined(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        """Emits ``node`` as a function of its own (CPython caps nested blocks at 20)."""
        fn = self.fresh("_sub")
        lines = [f"def {fn}(buf, p, end, d, bud):"]
        getattr(self, f"emit_{self.kind(node)}")(node, "v", "    ", lines)
        lines.append("    return v, p" if self.values else "    return p")
        self.funcs.append(lines)
        if self.values:
            out.append(f"{ind}{target}, p = {fn}(buf, p, end, d, bud)")
        else:
            out.append(f"{ind}p = {fn}(buf, p, end, d, bud)")

    def varint(self, var: str, ind: str, out: list[str], slow: str = "_long") -> None:
        out.append(f"{ind}{var} = buf[p]")
        out.append(f"{ind}if {var} < 128: p += 1; {var} = ({var} >> 1) ^ -({var} & 1)")
        out.append(f"{ind}else: {var}, p = {slow}(buf, p)")

    def assign(self, target: str, expr: str, ind: str, out: list[str]) -> None:
        if self.values:
            out.append(f"{ind}{target} = {expr}")

    def emit_null(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        self.assign(target, "None", ind, out)

    def emit_boolean(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        b = self.fresh("b")
        out.append(f"{ind}{b} = buf[p]")
        out.append(f"{ind}if {b} > 1: raise _e_bool(p, {b})")
        self.assign(target, f"{b} == 1", ind, out)
        out.append(f"{ind}p += 1")

    def emit_int(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        self.varint(target if self.values else self.fresh("x"), ind, out, "_int")

    def emit_long(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        self.varint(target if self.values else self.fresh("x"), ind, out)

    def emit_float(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        self.emit_number(target, 4, "_f32", ind, out)

    def emit_double(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        self.emit_number(target, 8, "_f64", ind, out)

    def emit_number(self, target: str, size: int, fn: str, ind: str, out: list[str]) -> None:
        # No bounds check: unpack_from raises struct.error past the end, and an overshooting
        # ``p`` is caught by the next read, the next length check or the final position check.
        self.assign(target, f"{fn}(buf, p)[0]", ind, out)
        out.append(f"{ind}p += {size}")

    def length_prefixed(self, ind: str, out: list[str]) -> str:
        """Reads a length and checks it; leaves the end offset in the returned variable."""
        n, q = self.fresh("n"), self.fresh("q")
        self.varint(n, ind, out)
        out.append(f"{ind}if {n} < 0: raise _e_neg(p, {n})")
        out.append(f"{ind}{q} = p + {n}")
        out.append(f"{ind}if {q} > end: raise _e_trunc(p, {n}, end)")
        return q

    def emit_string(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        q = self.length_prefixed(ind, out)
        if self.values:
            out.append(f"{ind}{target} = buf[p:{q}].decode()")
        else:
            out.append(f"{ind}buf[p:{q}].decode()")
        out.append(f"{ind}p = {q}")

    def emit_bytes(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        q = self.length_prefixed(ind, out)
        self.assign(target, f"buf[p:{q}]", ind, out)
        out.append(f"{ind}p = {q}")

    def emit_fixed(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        size = int(node["size"])
        self.assign(target, f"buf[p:p + {size}]", ind, out)
        out.append(f"{ind}p += {size}")

    def emit_enum(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        symbols = tuple(node["symbols"])
        i = self.fresh("i")
        self.varint(i, ind, out)
        count = len(symbols)
        out.append(f"{ind}if {i} < 0 or {i} >= {count}: raise _e_enum(p, {i}, {count})")
        if self.values:
            const = self.fresh("SYM")
            self.consts[const] = symbols
            out.append(f"{ind}{target} = {const}[{i}]")

    def emit_union(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        i = self.fresh("i")
        self.varint(i, ind, out)
        for index, branch in enumerate(node):
            out.append(f"{ind}{'if' if index == 0 else 'elif'} {i} == {index}:")
            before = len(out)
            self.emit(branch, target, ind + "    ", out)
            if len(out) == before:
                out.append(f"{ind}    pass")
        out.append(f"{ind}else: raise _e_union(p, {i}, {len(node)})")

    def block_loop(self, item_min: int, ind: str, out: list[str]) -> tuple[str, str, str]:
        """Opens the loops over blocks and items.

        Returns the item indent, the block indent and the variable holding the block's
        expected end offset (-1 when the block carries no byte size).
        """
        c, s, bs = self.fresh("c"), self.fresh("s"), self.fresh("bs")
        out.append(f"{ind}while True:")
        inner = ind + "    "
        self.varint(c, inner, out)
        out.append(f"{inner}if {c} == 0: break")
        out.append(f"{inner}if {c} < 0:")
        out.append(f"{inner}    {c} = -{c}")
        self.varint(s, inner + "    ", out)
        out.append(f"{inner}    if {s} < 0: raise _e_neg(p, {s})")
        out.append(f"{inner}    if {s} > end - p: raise _e_trunc(p, {s}, end)")
        out.append(f"{inner}    {bs} = p + {s}")
        out.append(f"{inner}else: {bs} = -1")
        if item_min:
            out.append(
                f"{inner}if {c} * {item_min} > end - p: raise _e_trunc(p, {c} * {item_min}, end)"
            )
        out.append(f"{inner}bud[0] -= {c}")
        out.append(f"{inner}if bud[0] < 0: raise _e_items(p)")
        out.append(f"{inner}for _ in range({c}):")
        return inner + "    ", inner, bs

    def close_block(self, inner: str, bs: str, out: list[str]) -> None:
        out.append(f"{inner}if {bs} >= 0 and p != {bs}: raise _e_block(p, {bs}, end)")

    def emit_array(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        lst, item = self.fresh("a"), self.fresh("v")
        if self.values:
            out.append(f"{ind}{lst} = []")
        body, inner, bs = self.block_loop(self.min_size(node["items"]), ind, out)
        before = len(out)
        self.emit(node["items"], item, body, out)
        if self.values:
            out.append(f"{body}{lst}.append({item})")
        elif len(out) == before:
            out.append(f"{body}pass")
        self.close_block(inner, bs, out)
        self.assign(target, lst, ind, out)

    def emit_map(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        dct, key, val = self.fresh("m"), self.fresh("k"), self.fresh("v")
        if self.values:
            out.append(f"{ind}{dct} = {{}}")
        body, inner, bs = self.block_loop(1 + self.min_size(node["values"]), ind, out)
        self.emit_string(None, key, body, out)
        self.emit(node["values"], val, body, out)
        if self.values:
            out.append(f"{body}{dct}[{key}] = {val}")
        self.close_block(inner, bs, out)
        self.assign(target, dct, ind, out)

    def emit_record(self, node: Any, target: str, ind: str, out: list[str]) -> None:
        fn = self.record_function(node)
        if self.values:
            out.append(f"{ind}{target}, p = {fn}(buf, p, end, d - 1, bud)")
        else:
            out.append(f"{ind}p = {fn}(buf, p, end, d - 1, bud)")

    emit_error = emit_record

    def record_function(self, node: Any) -> str:
        name = node["name"]
        if name in self.record_fn:
            return self.record_fn[name]
        fn = self.fresh("_rec")
        self.record_fn[name] = fn  # registered first: recursive references call it
        lines = [f"def {fn}(buf, p, end, d, bud):", "    if d < 0: raise _e_depth(p)"]
        fields = []
        for field in node["fields"]:
            var = self.fresh("f")
            fields.append((field["name"], var))
            self.emit(field["type"], var, "    ", lines)
        if self.values:
            items = ", ".join(f"{name!r}: {var}" for name, var in fields)
            lines.append(f"    return {{{items}}}, p")
        else:
            lines.append("    return p")
        self.funcs.append(lines)
        return fn

    def build(self, root: Any) -> Callable[..., Any]:
        entry = ["def _entry(buf, p, end, d, bud):"]
        self.emit(root, "value", "    ", entry)
        entry.append("    return value, p" if self.values else "    return None, p")
        source = "\n".join(line for func in [*self.funcs, entry] for line in func) + "\n"
        namespace: dict[str, Any] = {**_RUNTIME, **self.consts}
        code = compile(source, "<avro-binary-reader>", "exec")
        exec(code, namespace)  # noqa: S102 - source built from counters and repr literals only
        fn: Callable[..., Any] = namespace["_entry"]
        return fn


@dataclass(frozen=True, slots=True)
class BinaryReader:
    """Compiled reader and checker for one writer schema; safe on any input bytes."""

    _read: Callable[..., tuple[Any, int]]
    _check: Callable[..., tuple[None, int]]

    def read(self, data: bytes, offset: int, limits: DecodeLimits) -> Any:
        """Decodes the single value that must occupy ``data[offset:]`` exactly."""
        return self._run(self._read, data, offset, limits)

    def check(self, data: bytes, offset: int, limits: DecodeLimits) -> None:
        """Validates ``data[offset:]`` like :meth:`read` does, without building the value."""
        self._run(self._check, data, offset, limits)

    @staticmethod
    def _run(
        fn: Callable[..., tuple[Any, int]], data: bytes, offset: int, limits: DecodeLimits
    ) -> Any:
        if type(data) is not bytes:  # slices of bytes must be bytes, and never bytes(int)
            data = bytes(memoryview(data))
        end = len(data)
        if end > limits.max_frame_bytes:
            raise LimitExceededError(
                f"frame of {end} bytes exceeds the limit of {limits.max_frame_bytes}", offset=0
            )
        try:
            value, pos = fn(data, offset, end, limits.max_depth, [limits.max_items])
        except (IndexError, struct.error):
            raise TruncatedDataError(
                f"data ends at byte {end} in the middle of a value", offset=end
            ) from None
        except UnicodeDecodeError as exc:
            raise InvalidUtf8Error(f"string is not valid UTF-8: {exc.reason}") from None
        except RecursionError:
            raise LimitExceededError("value nests too deeply for the interpreter stack") from None
        if pos > end:
            raise TruncatedDataError(
                f"data ends at byte {end} but the value needs {pos - end} more", offset=end
            )
        if pos != end:
            raise TrailingBytesError(
                f"{end - pos} trailing bytes after the value, from byte {pos}", offset=pos
            )
        return value


def compile_reader(parsed: Any, named: Mapping[str, Any]) -> BinaryReader:
    """Compiles a fastavro-parsed schema into a reader.

    ``named`` maps full names to definitions, as filled by ``fastavro.parse_schema``'s
    ``named_schemas`` argument.
    """
    return BinaryReader(
        _read=_Compiler(named, values=True).build(parsed),
        _check=_Compiler(named, values=False).build(parsed),
    )
