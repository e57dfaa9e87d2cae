"""The OpenAPI 3 document of the query API, served at ``/openapi.json``.

Written by hand next to the handlers (no framework generates it); the schemathesis test
checks the running API against it, so a drift fails the build. Every time in an answer is
two fields (:mod:`contracts.times`): ``<name>`` (``format: date-time``, RFC 3339 UTC) and
``<name>_ms`` (epoch milliseconds), declared together by :func:`_time`.
"""

from __future__ import annotations

from typing import Any

from streams.query.commands import MAX_NAME, MAX_PARAMS, MAX_TTL_S, MAX_VALUE
from streams.query.params import MAX_LIMIT, MAX_SEEN_MINUTES, MAX_TIMEOUT_MS, RESOLUTIONS

__all__ = ["openapi_document"]

_INT = {"type": "integer"}
_NUM = {"type": "number"}
_STR = {"type": "string"}
_OFFSETS = {"type": "object", "additionalProperties": _INT}


def _time(name: str, doc: str, *, nullable: bool = False) -> dict[str, Any]:
    """The two fields of one time; ``nullable`` when the time itself may be absent."""
    ms: dict[str, Any] = {"type": ["integer", "null"]} if nullable else dict(_INT)
    return {
        name: {
            "type": ["string", "null"],
            "format": "date-time",
            "description": f"{doc}: RFC 3339, UTC, milliseconds (null outside the years "
            "1 to 9999, which RFC 3339 cannot write; the _ms field still has it)",
        },
        f"{name}_ms": {**ms, "description": f"{doc}: epoch milliseconds"},
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: list[str], **props: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": props}


def _param(
    name: str, where: str, schema: dict[str, Any], doc: str, *, required: bool = False
) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": doc}


_DEVICE_ID = _param(
    "device_id",
    "path",
    {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[^/+#\s\x00]+$"},
    "The device id (the key of its telemetry).",
    required=True,
)
_TIME = {
    "oneOf": [
        {"type": "integer", "minimum": 0, "maximum": 253_402_300_799_999},
        {"type": "string", "format": "date-time", "pattern": "^[0-9]{4}-"},
    ]
}
_CONSISTENCY = [
    _param(
        "consistency",
        "query",
        {"type": "string", "enum": ["eventual", "strong"], "default": "eventual"},
        "strong: wait until the store applied the partition's end offset as of arrival.",
    ),
    _param(
        "timeout_ms",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS, "default": 5000},
        "How long a strong read waits before answering 504 with the lag.",
    ),
]


def _json(schema: dict[str, Any], doc: str) -> dict[str, Any]:
    return {"description": doc, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    docs = {
        400: "A parameter is missing, malformed or out of range (named in `parameter`).",
        401: "Missing, unknown or revoked bearer token (when auth is on).",
        403: "The policy does not allow this token to read this scope.",
        404: "Unknown device.",
        503: "Not available now (retry).",
        504: "A strong read timed out; `lag` says how far behind the store is.",
    }
    return {str(s): _json(_ref("Error"), docs[s]) for s in (400, 401, 403, *statuses)}


def _get(summary: str, parameters: list[Any], ok: dict[str, Any], *errors: int) -> Any:
    return {
        "get": {
            "summary": summary,
            "parameters": parameters,
            "responses": {"200": ok, **_errors(*errors)},
        }
    }


def _sse(summary: str, parameters: list[Any]) -> Any:
    resume = [
        _param("Last-Event-ID", "header", _STR, "Resume after this log position."),
        _param("after", "query", _STR, "Same as Last-Event-ID (for the first connection)."),
    ]
    return {
        "get": {
            "summary": summary,
            "parameters": parameters + resume,
            "responses": {
                "200": {
                    "description": "text/event-stream; ids are log positions",
                    "content": {"text/event-stream": {"schema": _STR}},
                },
                **_errors(503),
            },
        }
    }


def _text(longest: int) -> dict[str, Any]:
    return {"type": "string", "minLength": 1, "maxLength": longest, "pattern": "^[^\\x00]+$"}


def _command_body() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {**_text(MAX_NAME), "description": "What the device firmware understands."},
            "params": {
                "type": "object",
                "maxProperties": MAX_PARAMS,
                "propertyNames": _text(MAX_NAME),
                "additionalProperties": _text(MAX_VALUE),
                "description": "Parameters, as strings.",
            },
            "ttl_s": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_TTL_S,
                "description": "Seconds after which the gateway drops the command undelivered "
                "(default: never).",
            },
            "command_id": {
                **_text(MAX_NAME),
                "description": "Makes a retried request send nothing twice (default: new).",
            },
        },
    }


def _post_command() -> Any:
    return {
        "post": {
            "summary": "Send a command (downlink) to one device through the outbox",
            "description": "Allowed by a policy HTTP rule for the topic "
            "devices/{device_id}/commands. 202: appended to the outbox, the relay publishes "
            "it; 200: this command_id was sent already, nothing appended.",
            "parameters": [_DEVICE_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _command_body()}},
            },
            "responses": {
                "202": _json(_ref("Command"), "appended to the outbox"),
                "200": _json(_ref("Command"), "a duplicate: sent already"),
                **_errors(503),
            },
        }
    }


def openapi_document() -> dict[str, Any]:
    """The document (a fresh dict each call)."""
    metric = _obj(["value", "ts", "ts_ms"], value=_NUM, **_time("ts", "Event time of the value"))
    schemas: dict[str, Any] = {
        "Error": _obj(
            ["error", "reason"],
            error=_STR,
            reason=_STR,
            parameter=_STR,
            lag=_INT,
            consistency=_ref("Consistency"),
        ),
        "Consistency": _obj(
            ["mode", "applied", "end", "lag", "end_age_ms"],
            mode={"type": "string", "enum": ["eventual", "strong"]},
            applied=_OFFSETS,
            end=_OFFSETS,
            lag={"type": "integer", "minimum": 0},
            end_age_ms=_INT,
        ),
        "Device": _obj(
            [
                "device_id",
                "first_seen",
                "first_seen_ms",
                "last_seen",
                "last_seen_ms",
                "count",
                "last_seq",
                "metrics",
            ],
            device_id=_STR,
            **_time("first_seen", "Event time of the device's earliest reading"),
            **_time("last_seen", "Event time of the device's latest reading"),
            count=_INT,
            last_seq={"type": ["integer", "null"]},
            metrics={"type": "object", "additionalProperties": metric},
            presence=_obj(
                ["online", "since", "since_ms", "reason", "caught_up"],
                online={"type": ["boolean", "null"]},
                **_time("since", "When the latest connect or disconnect was", nullable=True),
                reason={"type": ["string", "null"]},
                caught_up={"type": "boolean"},
            ),
            consistency=_ref("Consistency"),
        ),
        "DeviceList": _obj(
            ["devices", "next_after", "consistency"],
            devices={"type": "array", "items": _ref("Device")},
            next_after={"type": ["string", "null"]},
            consistency=_ref("Consistency"),
        ),
        "Point": _obj(
            ["start", "start_ms", "end", "end_ms", "count", "min", "max", "sum", "mean", "closed"],
            **_time("start", "Window start (inclusive)"),
            **_time("end", "Window end (exclusive)"),
            count=_INT,
            min=_NUM,
            max=_NUM,
            sum=_NUM,
            mean=_NUM,
            closed={"type": "boolean"},
        ),
        "Aggregates": _obj(
            [
                "device_id",
                "metric",
                "resolution",
                "from",
                "from_ms",
                "to",
                "to_ms",
                "points",
                "consistency",
            ],
            device_id=_STR,
            metric=_STR,
            resolution={"type": "string", "enum": list(RESOLUTIONS)},
            points={"type": "array", "items": _ref("Point")},
            consistency=_ref("Consistency"),
            **_time("from", "Range start (inclusive)"),
            **_time("to", "Range end (exclusive)"),
        ),
        "Loss": _obj(
            [
                "device_id",
                "sequence",
                "duplicates",
                "late",
                "invalid_values",
                "retention_gap",
                "dlq",
                "consistency",
            ],
            device_id=_STR,
            sequence=_obj(
                ["missing", "gaps", "written_off", "out_of_window", "resets"],
                first_seq={"type": ["integer", "null"]},
                last_seq={"type": ["integer", "null"]},
                missing=_INT,
                gaps={"type": "array", "items": {"type": "array", "items": _INT}},
                gaps_total=_INT,
                written_off=_INT,
                out_of_window=_INT,
                boot={"type": ["integer", "null"]},
                resets=_INT,
            ),
            duplicates=_INT,
            late={"type": "object", "additionalProperties": _INT},
            invalid_values=_INT,
            retention_gap={
                **_obj(["partition", "records"], partition=_INT, records=_INT),
                "description": "records of the device's partition that retention deleted "
                "before the workers applied them (whose devices cannot be known)",
            },
            dlq=_obj(
                ["rejected", "by_reason", "positions", "caught_up"],
                rejected=_INT,
                by_reason={"type": "object", "additionalProperties": _INT},
                positions=_OFFSETS,
                caught_up={"type": "boolean"},
                source=_STR,
            ),
            consistency=_ref("Consistency"),
        ),
        "AlertState": _obj(
            ["device_id", "rule", "active", "since", "since_ms", "value"],
            device_id=_STR,
            rule=_STR,
            active={"type": "boolean"},
            **_time("since", "Event time of the rule's latest transition"),
            value=_NUM,
            cause_event_id=_STR,
        ),
        "Alerts": _obj(
            ["alerts", "next_after", "consistency"],
            alerts={"type": "array", "items": _ref("AlertState")},
            next_after={"type": ["string", "null"]},
            consistency=_ref("Consistency"),
        ),
        "AlertTransition": _obj(
            ["event_id", "device_id", "state", "rule", "ts", "ts_ms", "position"],
            event_id=_STR,
            device_id=_STR,
            state={"type": "string", "enum": ["UNKNOWN", "RAISED", "CLEARED"]},
            rule=_STR,
            metric=_STR,
            value=_NUM,
            threshold=_NUM,
            window_ms={**_INT, "description": "Length of the evaluated window (a duration)"},
            position={**_STR, "description": "partition:offset in the alert topic"},
            **_time("ts", "Event time of the transition (end of the deciding window)"),
        ),
        "AlertHistory": _obj(
            ["alerts", "truncated", "next_after", "end", "scanned", "undecodable", "gap"],
            alerts={"type": "array", "items": _ref("AlertTransition")},
            truncated={"type": "boolean"},
            next_after={"type": ["string", "null"]},
            read_to=_STR,
            end=_OFFSETS,
            scanned=_INT,
            undecodable=_INT,
            gap={
                "type": "array",
                "items": _obj(
                    ["partition", "from", "to"], partition=_INT, **{"from": _INT}, to=_INT
                ),
            },
        ),
        "Command": _obj(
            [
                "command_id",
                "device_id",
                "name",
                "params",
                "issued_at",
                "issued_at_ms",
                "expires_at",
                "expires_at_ms",
                "duplicate",
            ],
            command_id=_STR,
            device_id=_STR,
            name=_STR,
            params={"type": "object", "additionalProperties": _STR},
            **_time("issued_at", "When the worker accepted the command"),
            **_time("expires_at", "When the gateway stops delivering it", nullable=True),
            duplicate={"type": "boolean"},
        ),
        "Overview": _obj(
            [
                "time",
                "time_ms",
                "devices",
                "alerts",
                "partitions",
                "ingest",
                "dlq",
                "workers",
                "processes",
                "consistency",
            ],
            **_time("time", "The worker's clock when it answered"),
            devices=_obj(
                ["total", "seen", "seen_minutes", "online", "presence_caught_up"],
                total=_INT,
                seen={
                    **_INT,
                    "description": "Devices with a reading dated in the last "
                    "seen_minutes (event time)",
                },
                seen_minutes=_INT,
                online={
                    **_INT,
                    "description": "Devices whose latest connection event is a connect",
                },
                presence_caught_up={"type": "boolean"},
            ),
            alerts=_obj(["active"], active=_INT),
            partitions={
                "type": "array",
                "items": _obj(
                    ["partition", "applied", "end", "lag"],
                    partition=_INT,
                    applied={**_INT, "description": "Last offset applied (-1: none)"},
                    end={**_INT, "description": "The log's end offset (next to be written)"},
                    lag=_INT,
                ),
            },
            ingest={
                "type": "array",
                "description": "The last hour, one point per sample (every 10 s)",
                "items": _obj(
                    ["time", "time_ms", "ingest_per_s", "applied_per_s", "lag", "freshness_s"],
                    **_time("time", "When the sample was taken"),
                    ingest_per_s={**_NUM, "description": "Records written to the log per second"},
                    applied_per_s={**_NUM, "description": "Records applied per second"},
                    lag=_INT,
                    freshness_s={
                        "type": ["number", "null"],
                        "description": "Acknowledged-to-applied estimate: lag / apply rate",
                    },
                ),
            },
            dlq=_obj(
                ["minutes", "caught_up"],
                minutes={
                    "type": "array",
                    "items": _obj(
                        ["start", "start_ms", "by_reason"],
                        **_time("start", "The minute (by the DLQ record's timestamp)"),
                        by_reason={"type": "object", "additionalProperties": _INT},
                    ),
                },
                caught_up={"type": "boolean"},
            ),
            workers={
                "type": "array",
                "items": _obj(
                    ["group", "ready", "dlq_caught_up"],
                    group=_STR,
                    ready={"type": "boolean"},
                    dlq_caught_up={"type": "boolean"},
                ),
            },
            processes={
                "type": "array",
                "description": "The other processes named in the worker's query.processes "
                "(the gateways), each asked for its /readyz",
                "items": _obj(
                    ["name", "ready", "problem"],
                    name=_STR,
                    ready={"type": "boolean"},
                    problem={"type": ["string", "null"]},
                ),
            },
            consistency=_ref("Consistency"),
        ),
        "Health": _obj(
            ["status", "ready", "time", "time_ms", "dlq_caught_up", "consistency"],
            status=_STR,
            ready={"type": "boolean"},
            **_time("time", "The worker's clock when it answered"),
            dlq_caught_up={"type": "boolean"},
            consistency=_ref("Consistency"),
        ),
    }
    limit = _param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 100},
        "Page size.",
    )
    optional_device = _param(
        "device_id", "query", _DEVICE_ID["schema"], "Only this device's alerts."
    )
    paths = {
        "/api/health": _get("Health and lag of this worker", [], _json(_ref("Health"), "ok")),
        "/api/overview": _get(
            "The fleet at a glance: devices, presence, alerts, lag, ingest, DLQ",
            [
                _param(
                    "seen_minutes",
                    "query",
                    {"type": "integer", "minimum": 1, "maximum": MAX_SEEN_MINUTES, "default": 5},
                    "Count the devices seen in this many minutes.",
                ),
            ],
            _json(_ref("Overview"), "the overview"),
        ),
        "/api/devices": _get(
            "Devices, by id, in pages",
            [
                _param("after", "query", _DEVICE_ID["schema"], "Page after this device id."),
                limit,
                _param("seen_since", "query", _TIME, "Only devices seen at or after this time."),
                _param(
                    "has_metric",
                    "query",
                    {"type": "string", "minLength": 1, "maxLength": 128},
                    "Only devices with a latest value of this metric.",
                ),
                *_CONSISTENCY,
            ],
            _json(_ref("DeviceList"), "a page of devices"),
            504,
        ),
        "/api/devices/{device_id}": _get(
            "One device's state",
            [_DEVICE_ID, *_CONSISTENCY],
            _json(_ref("Device"), "state"),
            404,
            504,
        ),
        "/api/devices/{device_id}/aggregates": _get(
            "Window aggregates of one metric over [from, to)",
            [
                _DEVICE_ID,
                _param(
                    "metric",
                    "query",
                    {"type": "string", "minLength": 1, "maxLength": 128},
                    "The metric.",
                    required=True,
                ),
                _param(
                    "resolution",
                    "query",
                    {"type": "string", "enum": list(RESOLUTIONS)},
                    "Window size.",
                ),
                _param("from", "query", _TIME, "Range start (inclusive).", required=True),
                _param("to", "query", _TIME, "Range end (exclusive).", required=True),
                *_CONSISTENCY,
            ],
            _json(_ref("Aggregates"), "points"),
            404,
            504,
        ),
        "/api/devices/{device_id}/loss": _get(
            "Loss accounting: gaps, duplicates, late events, DLQ rejections",
            [_DEVICE_ID, *_CONSISTENCY],
            _json(_ref("Loss"), "loss"),
            404,
            504,
        ),
        "/api/devices/{device_id}/commands": _post_command(),
        "/api/devices/{device_id}/stream": _sse("Live readings of one device (SSE)", [_DEVICE_ID]),
        "/api/alerts": _get(
            "Alert states (active only by default)",
            [
                optional_device,
                _param(
                    "active",
                    "query",
                    {"type": "string", "enum": ["true", "false"]},
                    "false: every rule's state.",
                ),
                _param(
                    "after",
                    "query",
                    {"type": "string", "minLength": 3, "maxLength": 257, "pattern": "^[^/]+/.+$"},
                    "Page after this device_id/rule (a next_after).",
                ),
                limit,
                *_CONSISTENCY,
            ],
            _json(_ref("Alerts"), "alert states"),
            504,
        ),
        "/api/alerts/history": _get(
            "Alert transitions from the alert log over [from, to)",
            [
                optional_device,
                _param("from", "query", _TIME, "Range start.", required=True),
                _param("to", "query", _TIME, "Range end (default: now)."),
                _param(
                    "after",
                    "query",
                    {"type": "string", "pattern": "^[0-9]+:-?[0-9]+(,[0-9]+:-?[0-9]+)*$"},
                    "Resume after these positions (a next_after); names every partition read.",
                ),
                limit,
            ],
            _json(_ref("AlertHistory"), "transitions"),
        ),
        "/api/alerts/stream": _sse("Live alerts (SSE)", [optional_device]),
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "iot-telemetry queries", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}, {}],
    }
