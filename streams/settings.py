"""Stream worker settings: one YAML file (``config/streams.yaml``) plus ``IOT_STREAMS_*``.

Environment variables win over the file, nested with ``__``:
``IOT_STREAMS_STORE=postgresql://...``, ``IOT_STREAMS_KAFKA__BOOTSTRAP=host:9092``,
``IOT_STREAMS_HTTP__PORT=9466`` for a second worker on the same host.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import SettingsConfigDict

from contracts.kafka import KafkaClientSettings
from contracts.settings_file import FileSettings, load_settings
from contracts.topics import ALERTS, COMMANDS, DEVICE_EVENTS, TELEMETRY, TELEMETRY_DLQ
from streams.errors import ConfigError
from streams.projections.windows import DEFAULT_WINDOWS, WindowSpec

_STRICT = ConfigDict(extra="forbid", frozen=True)


class HttpSettings(BaseModel):
    """Metrics (/metrics) and health (/healthz, /readyz) of the worker."""

    model_config = _STRICT
    host: str = "127.0.0.1"
    port: int = Field(9465, ge=0, lt=65536)


class NotifierSettings(BaseModel):
    """The alert notifier: an idempotent consumer of alerts that sends downlink commands."""

    model_config = _STRICT
    enabled: bool = True
    group_id: str = "iot-streams-notifier"
    commands_topic: str = COMMANDS.name
    """Where the commands go: the topic the gateways' downlink reads."""
    commands: dict[str, str] = Field(default_factory=lambda: {"temperature-high": "cool_down"})
    """Rule name -> command sent to the device when that rule raises an alert."""
    dedupe_horizon_s: float = Field(7 * 86_400.0, gt=0)
    """How long the notifier remembers the alerts it handled (by the alert's time): older
    records are pruned, and an alert older than this is passed over, never sent twice."""


class QueryAuthSettings(BaseModel):
    """Bearer tokens for the query API, checked against the security policy's HTTP scopes.

    Off by default while the dev stack runs unsecured; when on, ``policy_file`` (the policy
    YAML) and ``tokens_file`` (``iotctl tokens`` store) are required.
    """

    model_config = _STRICT
    enabled: bool = True
    policy_file: Path | None = None
    tokens_file: Path | None = None
    reload_every_s: float = Field(1.0, ge=0)
    """How often the policy file is checked for changes (a changed scope needs no restart)."""


class QuerySettings(BaseModel):
    """The HTTP query API (``/api/...``, ``/openapi.json``, ``/ui``) on the worker's port."""

    model_config = _STRICT
    enabled: bool = True
    dlq_topic: str = TELEMETRY_DLQ.name
    presence_topic: str = DEVICE_EVENTS.name
    """Where the gateways write connects and disconnects (the ``presence`` of a device)."""
    read_connections: int = Field(2, ge=1, le=16)
    """Store instances used for reads only (own connections, so reads never queue behind a
    batch commit)."""
    end_offsets_refresh_s: float = Field(0.25, gt=0)
    max_subscribers: int = Field(64, ge=0)
    max_subscribers_per_client: int = Field(8, ge=1)
    max_history_scans: int = Field(8, ge=1)
    """Alert-history requests reading the log at once (each its own consumer); one client
    may hold 2 of them (429 above), the worker ``max_history_scans`` (503 above)."""
    """Open streams one client (token principal, else address) may hold: 429 above."""
    history_max_scan_s: float = Field(5.0, gt=0)
    """The longest one alert-history request reads the log; then it answers ``truncated``
    with ``next_after`` to continue from."""
    sse_max_behind: int = Field(10_000, ge=1)
    """A stream whose client is more than this many records behind the log is ended with a
    ``disconnect`` event (reason ``too_slow``); the client resumes with Last-Event-ID."""
    sse_write_timeout_s: float = Field(5.0, gt=0)
    sse_heartbeat_s: float = Field(15.0, gt=0)
    auth: QueryAuthSettings = QueryAuthSettings()
    processes: dict[str, str] = {}
    """The platform's other processes whose readiness the fleet overview shows: name -> its
    ``/readyz`` URL (``IOT_STREAMS_QUERY__PROCESSES='{"gateway-1": "http://..."}'``)."""


class WorkerSettings(FileSettings):
    """Everything one stream worker needs; frozen once loaded."""

    model_config = SettingsConfigDict(
        env_prefix="IOT_STREAMS_", env_nested_delimiter="__", extra="forbid", frozen=True
    )
    group: str = "iot-streams"
    """The consumer group (and faust app id): workers of one group share the partitions."""
    kafka: KafkaClientSettings = KafkaClientSettings()
    telemetry_topic: str = TELEMETRY.name
    alerts_topic: str = ALERTS.name
    """Where the outbox relay publishes alerts; the notifier and the query API read them here."""
    store: str = "sqlite:///.local/worker/state.db"
    """``sqlite:///PATH`` (one worker) or a ``postgresql://`` DSN (any number of workers)."""
    registry: str = "embedded"
    batch_max: int = Field(5000, ge=1)
    """Most events in one store transaction: only reached while catching up (a live stream
    fills a batch for ``batch_within_s``); larger batches amortise the commit."""
    batch_within_s: float = Field(0.05, gt=0)
    consumer: Literal["batches", "faust"] = "batches"
    """How telemetry is consumed: ``batches`` hands aiokafka's fetches to the runtime whole
    (about five times faster); ``faust`` uses a faust agent's stream of events."""
    store_stall_s: float = Field(10.0, gt=0)
    """A store call waiting longer than this makes ``/readyz`` answer 503 until it returns."""
    session_timeout_s: float = Field(6.0, ge=6.0)
    """How long a silent worker keeps its partitions (Kafka's group.min.session.timeout.ms is
    6 s): the longest a crash can delay the partitions of the worker that died."""
    alert_rules: Path | None = Path("config/alerts.example.yaml")
    relay: bool = True
    outbox_keep_s: float = Field(300.0, ge=0)
    """Published outbox rows are deleted this long after publication (checked every minute):
    the outbox is a queue, not a history; the alert topic is the history."""
    dedupe_horizon_s: float = Field(600.0, ge=0)
    """A reading without ``seq`` is recognised as a duplicate when dated at most this far
    behind its device's newest reading (event time); one dated further back is skipped and
    counted ``out_of_window``. Memory and store rows grow with the rate of such readings
    times this horizon; readings with ``seq`` cost nothing here."""
    window_retention_s: dict[str, float | None] = Field(
        default_factory=lambda: dict[str, float | None]({"1m": 7 * 86_400.0, "1h": 90 * 86_400.0})
    )
    """How long each window size is kept after it closed, by window name (event time: the
    device's own watermark decides, so live and rebuilt state agree); null keeps it for good."""
    notifier: NotifierSettings = NotifierSettings()
    http: HttpSettings = HttpSettings()
    query: QuerySettings = QuerySettings()
    data_dir: Path = Path(".local/worker/faust")
    """faust's own working folder (its table state would live here; the worker keeps none)."""

    @field_validator("window_retention_s")
    @classmethod
    def _known_windows(cls, value: dict[str, float | None]) -> dict[str, float | None]:
        names = {spec.name for spec in DEFAULT_WINDOWS}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"unknown window(s) {unknown}: the windows are {sorted(names)}")
        if any(seconds is not None and seconds < 0 for seconds in value.values()):
            raise ValueError("a retention must be >= 0 seconds (or null: for good)")
        return value

    def windows(self) -> tuple[WindowSpec, ...]:
        """The window sizes with their retention."""
        retention = self.window_retention_s
        return tuple(
            dataclasses.replace(
                spec,
                retention_ms=None
                if retention.get(spec.name) is None
                else round(retention[spec.name] * 1000),  # type: ignore[operator]
            )
            for spec in DEFAULT_WINDOWS
        )


def load_worker_settings(path: Path | None) -> WorkerSettings:
    """Reads ``path`` (or only the environment when None); errors name the key."""
    return load_settings(WorkerSettings, path, ConfigError)
