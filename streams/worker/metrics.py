"""The worker's Prometheus metrics, in a registry of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class WorkerMetrics:
    """Applied and skipped events, batch size and commit latency, lag, outbox backlog."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.applied = Counter("iot_streams_events_applied", "events applied", registry=r)
        self.commit_hints_refused = Counter(
            "iot_streams_commit_hints_refused",
            "offset commits to the group refused (a rebalance, Kafka away); the store's "
            "positions decide, so the worker goes on",
            registry=r,
        )
        self.retention_gap = Counter(
            "iot_streams_retention_gap_records",
            "records retention deleted before the group applied them (lost), per partition",
            ["partition"],
            registry=r,
        )
        self.registry_retries = Counter(
            "iot_streams_registry_retries",
            "writer-schema fetches retried because the registry was unavailable or slow "
            "(the batch waits; nothing is skipped)",
            registry=r,
        )
        self.skipped = Counter(
            "iot_streams_events_skipped", "events not applied, by reason", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "iot_streams_batch_size",
            "events per batch",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000, 5000),
            registry=r,
        )
        self.commit_latency = Histogram(
            "iot_streams_commit_seconds",
            "store transaction time per batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.lag = Gauge(
            "iot_streams_consumer_lag", "end offset minus next offset", ["partition"], registry=r
        )
        self.outbox_backlog = Gauge(
            "iot_streams_outbox_backlog", "outbox rows not yet published", registry=r
        )
        self.published = Counter(
            "iot_streams_outbox_published", "outbox rows published", registry=r
        )
        self.outbox_pruned = Counter(
            "iot_streams_outbox_pruned", "published outbox rows deleted", registry=r
        )
        self.publish_latency = Histogram(
            "iot_streams_outbox_publish_seconds",
            "time to publish one claimed outbox batch (acks=all)",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=r,
        )
        self.commands = Counter(
            "iot_streams_notifier_commands", "commands sent for raised alerts", registry=r
        )
        self.notifier_stale = Counter(
            "iot_streams_notifier_stale",
            "alerts older than the notifier's dedupe horizon, passed over (no command)",
            registry=r,
        )
        self.tracking_pruned = Counter(
            "iot_streams_notifier_tracking_pruned",
            "records of handled alerts forgotten past the dedupe horizon",
            registry=r,
        )
        self.notifier_skipped = Counter(
            "iot_streams_notifier_skipped",
            "records on the alerts topic that are not alerts, passed over",
            registry=r,
        )
