"""What the gateway does with one MQTT message, as a pure function: accept it or reject it.

``Ingest.process`` never raises for bad input: every problem becomes a ``Rejected`` with a
machine-readable ``reason`` (used in DLQ headers and metrics) and a human-readable ``detail``.

Everything decided by the topic alone (its route, its device id, or why it is rejected) is
remembered per topic in a bounded table, so a device's steady stream pays for it once.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from contracts.avro import AvroError
from contracts.identifiers import device_id_problem
from iot_gateway.config import LimitSettings, RouteSettings
from iot_gateway.ratelimit import DeviceRateLimiter
from policy.errors import TopicError
from policy.topics import matches

REASONS = (
    "invalid_topic",
    "unknown_route",
    "invalid_device_id",
    "payload_too_large",
    "rate_limited",
    "unauthorized",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "device_mismatch",
    "schema_mismatch",
    "invalid_avro",
    "packet_too_large",
    "implausible_timestamp",
)
"""Every reason a message can be rejected for; metrics are labelled with these."""

DLQ_EXCERPT_BYTES = 1024
"""How much of an oversized payload its DLQ record keeps."""

TOPIC_CACHE_SIZE = 65_536
"""Topics whose routing decision is remembered; the oldest is forgotten first."""

STAMPED = ("event_id", "device_id", "received_at", "ts_stamped")
"""Fields the gateway sets; a payload may carry ``device_id`` only if it is the topic's."""


class RecordCodec(Protocol):
    """The Avro side of one route's subject (``codecs.SubjectCodec``)."""

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Validates ``record`` and returns it in the Confluent wire format.

        Raises an ``AvroError`` naming the offending field when the record does not fit.
        """
        ...

    def decode_plain(self, payload: bytes) -> dict[str, Any]:
        """Reads plain Avro binary of this subject's schema; ``AvroError`` if it is not that."""
        ...

    @property
    def field_names(self) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class Accepted:
    """A message turned into a Kafka record, ready to produce."""

    route: str
    kafka_topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    event_id: str
    device_id: str


@dataclass(frozen=True, slots=True)
class Throttled:
    """A device over its rate (``over_rate: delay``): nothing decided, nothing counted yet."""

    device_id: str
    wait_s: float


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message the gateway refuses, and why; it goes to the DLQ with its raw bytes."""

    reason: str
    detail: str
    route: str | None = None
    device_id: str | None = None

    def headers(self, mqtt_topic: str, received_at: int) -> tuple[tuple[str, bytes], ...]:
        """DLQ record headers; the raw topic is kept as bytes even if it is not valid UTF-8."""
        return (
            ("reason", self.reason.encode()),
            ("detail", self.detail.encode(errors="replace")[:1024]),
            ("route", (self.route or "").encode()),
            ("device_id", (self.device_id or "").encode(errors="replace")),
            ("mqtt_topic", mqtt_topic.encode(errors="surrogateescape")),
            ("received_at", str(received_at).encode()),
        )

    def dlq_value(self, payload: bytes, keep: int) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
        """The DLQ record's value and extra headers: the raw payload when it is at most
        ``keep`` bytes (the route's size limit), else its first :data:`DLQ_EXCERPT_BYTES`
        with its length and SHA-256, so a dead letter always fits in a Kafka record and
        never stalls the input behind it."""
        if len(payload) <= keep:
            return payload, ()
        return payload[:DLQ_EXCERPT_BYTES], (
            ("payload_bytes", str(len(payload)).encode()),
            ("payload_sha256", hashlib.sha256(payload).hexdigest().encode()),
        )


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """What goes to Kafka for one message: its record, or its dead letter."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


def kafka_record(
    result: Accepted | Rejected,
    mqtt_topic: str,
    payload: bytes,
    received_at: int,
    *,
    dlq_topic: str,
    keep: int,
) -> KafkaRecord:
    """The record for an accepted message, or the DLQ record of a rejected one (its raw
    payload up to ``keep`` bytes, see :meth:`Rejected.dlq_value`)."""
    if isinstance(result, Accepted):
        return KafkaRecord(result.kafka_topic, result.key, result.value, result.headers)
    value, extra = result.dlq_value(payload, keep)
    key = result.device_id.encode(errors="replace") if result.device_id else None
    return KafkaRecord(dlq_topic, key, value, (*result.headers(mqtt_topic, received_at), *extra))


Authorize = Callable[[str, RouteSettings, str], str | None]
"""(principal, route, topic) -> None when allowed, else the reason it is not. Asked for the
device the topic names (a device's key is fed only if that device may publish there) and,
in direct mode, also for who published (the connection's login; in bridge mode the broker
checked that)."""


def allow_all(device_id: str, route: RouteSettings, topic: str) -> str | None:
    """The authorizer hook's default until a policy is configured."""
    return None


def event_id_for(
    device_id: str,
    seq: int | None,
    boot: int | None,
    topic: str,
    payload: bytes,
    stamped: int | None,
) -> str:
    """Stable id of one message, the same for every redelivery of it.

    * ``<device>:<boot>:<seq>`` when the device numbers its messages and names its boot epoch;
      ``<device>:<seq>`` without a boot epoch;
    * else a hash of topic and payload (which holds the device's ``ts``), plus the time the
      gateway stamped (``stamped``) when the payload has no ``ts``: two genuine readings with
      equal values are different events, and such a message redelivered is a new one too
      (give messages a ``seq`` or a ``ts`` to have them de-duplicated).
    """
    if seq is not None:
        return f"{device_id}:{seq}" if boot is None else f"{device_id}:{boot}:{seq}"
    digest = hashlib.sha256(topic.encode(errors="surrogateescape") + b"\0" + payload)
    if stamped is not None:
        digest.update(b"\0%d" % stamped)
    return "sha256:" + digest.hexdigest()[:32]


class Ingest:
    """Route ▸ device id ▸ size ▸ rate limit ▸ authorize ▸ parse ▸ validate ▸ stamp ▸ encode."""

    def __init__(
        self,
        routes: Sequence[RouteSettings],
        codecs: Mapping[str, RecordCodec],
        limits: LimitSettings,
        rate_limiter: DeviceRateLimiter,
        authorize: Authorize = allow_all,
    ) -> None:
        missing = [route.subject for route in routes if route.subject not in codecs]
        if missing:
            raise ValueError(f"no codec for subjects {missing}")
        self._routes = tuple(routes)
        self._codecs = codecs
        self._limits = limits
        self._rate_limiter = rate_limiter
        self._authorize = authorize
        self._topics: dict[str, _TopicDecision] = {}

    def route_for(self, topic: str) -> RouteSettings | None:
        """The first route whose filter matches ``topic``; TopicError if it is no topic name."""
        for route in self._routes:
            if matches(route.filter, topic):
                return route
        return None

    def process(
        self, topic: str, payload: bytes, received_at: int, principal: str | None = None
    ) -> Accepted | Rejected | Throttled:
        """Decides one message; never raises for anything the message contains. Throttled
        means "not yet": process the same message again after ``wait_s``. ``principal`` is
        who published it, when known (direct mode)."""
        decision = self._topics.get(topic)
        if decision is None:
            decision = self._decide_topic(topic)
            if len(self._topics) >= TOPIC_CACHE_SIZE:
                del self._topics[next(iter(self._topics))]
            self._topics[topic] = decision
        if isinstance(decision, Rejected):
            return decision
        route, device_id, device_key, topic_bytes = decision
        if len(payload) > self._limits.max_payload_bytes:
            return Rejected(
                "payload_too_large",
                f"{len(payload)} bytes > limit {self._limits.max_payload_bytes}",
                route.name,
                device_id,
            )
        if self._limits.over_rate == "delay":
            wait_s = self._rate_limiter.wait_s(device_id)
            if wait_s > 0.0:
                return Throttled(device_id, wait_s)
        elif not self._rate_limiter.allow(device_id):
            return Rejected(
                "rate_limited",
                f"over {self._rate_limiter.rate:g} msg/s (burst {self._rate_limiter.burst:g})",
                route.name,
                device_id,
            )
        denied = self._authorize(device_id, route, topic)  # the key it feeds: in both modes
        if denied is None and principal is not None and principal != device_id:
            denied = self._authorize(principal, route, topic)  # and who published it
        if denied is not None:
            return Rejected("unauthorized", denied, route.name, device_id)
        codec = self._codecs[route.subject]
        parsed = self._parse(route, codec, payload)
        if isinstance(parsed, Rejected):
            return Rejected(parsed.reason, parsed.detail, route.name, device_id)
        return self._stamp_and_encode(
            route, codec, parsed, (device_id, device_key, topic_bytes), topic, payload, received_at
        )

    def _decide_topic(self, topic: str) -> _TopicDecision:
        """What the topic alone decides: its route and device id, or why it is rejected."""
        try:
            route = self.route_for(topic)
        except TopicError as exc:
            return Rejected("invalid_topic", str(exc))
        if route is None:
            return Rejected("unknown_route", f"no route matches topic {topic!r}")
        device_id = topic.split("/")[route.device_level or 0]  # set by RouteSettings
        problem = device_id_problem(device_id)
        if problem:
            return Rejected("invalid_device_id", f"device id {problem}", route.name, None)
        return route, device_id, device_id.encode(), topic.encode()

    def _parse(
        self, route: RouteSettings, codec: RecordCodec, payload: bytes
    ) -> dict[str, Any] | Rejected:
        if route.payload_format == "avro":
            try:
                return codec.decode_plain(payload)
            except AvroError as exc:
                return Rejected("invalid_avro", f"{exc.reason}: {exc}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Rejected("invalid_utf8", f"payload is not UTF-8 (byte {exc.start})")
        try:
            document = _JSON.decode(text)
        except ValueError as exc:
            return Rejected("invalid_json", str(exc))
        if not isinstance(document, dict):
            return Rejected("not_an_object", f"payload is a JSON {type(document).__name__}")
        return document

    def _stamp_and_encode(
        self,
        route: RouteSettings,
        codec: RecordCodec,
        record: dict[str, Any],
        device: tuple[str, bytes, bytes],
        topic: str,
        payload: bytes,
        received_at: int,
    ) -> Accepted | Rejected:
        device_id, device_key, topic_bytes = device
        claimed = record.get("device_id", device_id)
        if claimed != device_id:
            return Rejected(
                "device_mismatch",
                f"payload device_id {claimed!r} is not the topic's {device_id!r}",
                route.name,
                device_id,
            )
        if route.payload_format == "json":
            for field in ("event_id", "received_at", "ts_stamped"):
                if field in record:
                    return _mismatch(route, device_id, f"{field} is set by the gateway")
            if not codec.field_names.issuperset(record):
                unknown = sorted(set(record) - codec.field_names)
                return _mismatch(route, device_id, f"unknown field(s) {', '.join(unknown)}")
        seq, boot = record.get("seq"), record.get("boot")
        for name, number in (("seq", seq), ("boot", boot)):
            if number is not None and (type(number) is not int or number < 0):
                return _mismatch(route, device_id, f"{name} must be a non-negative integer")
        problem = _metrics_problem(record.get("metrics"))
        if problem:
            return _mismatch(route, device_id, problem)
        stamped = self._stamp_time(codec, record, received_at)
        if isinstance(stamped, str):
            return Rejected("implausible_timestamp", stamped, route.name, device_id)
        event_id = event_id_for(device_id, seq, boot, topic, payload, stamped)
        record["event_id"] = event_id
        record["device_id"] = device_id
        record["received_at"] = received_at
        try:
            value = codec.encode(record)
        except AvroError as exc:
            return _mismatch(route, device_id, str(exc))
        return Accepted(
            route=route.name,
            kafka_topic=route.kafka_topic,
            key=device_key,
            value=value,
            headers=(
                ("event_id", event_id.encode()),
                ("device_id", device_key),
                ("mqtt_topic", topic_bytes),
                ("content_type", _AVRO_CONTENT_TYPE),
            ),
            event_id=event_id,
            device_id=device_id,
        )

    def _stamp_time(
        self, codec: RecordCodec, record: dict[str, Any], received_at: int
    ) -> int | str | None:
        """Sets ``ts`` to ``received_at`` when the record has none and returns it; else None,
        or why the record's own ``ts`` is implausible. Marks which it was (``ts_stamped``)."""
        stamped = None
        if "ts" in codec.field_names:
            ts = record.get("ts")
            if ts is None:
                stamped = record["ts"] = received_at
            elif type(ts) is int:
                problem = self._limits.timestamp_problem(ts, received_at)
                if problem:
                    return problem
        if "ts_stamped" in codec.field_names:
            record["ts_stamped"] = stamped is not None
        return stamped


def _mismatch(route: RouteSettings, device_id: str, detail: str) -> Rejected:
    return Rejected("schema_mismatch", detail, route.name, device_id)


def _metrics_problem(metrics: object) -> str | None:
    if metrics is None or not isinstance(metrics, dict):
        return None  # absent or mistyped: the schema check names it
    for name, value in metrics.items():
        if type(value) not in (int, float) or not math.isfinite(value):
            return f"metrics.{name} must be a finite number"
    return None


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)
"""What ``json.loads(text, parse_constant=...)`` builds per call, built once."""

_AVRO_CONTENT_TYPE = b"application/vnd.confluent.avro"

_TopicDecision = tuple[RouteSettings, str, bytes, bytes] | Rejected
"""(route, device id, device id as bytes, topic as bytes), or the topic's rejection."""
