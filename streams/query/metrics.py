"""The query API's Prometheus metrics, registered in the worker's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["QueryMetrics"]


class QueryMetrics:
    """Requests by route and status, rejected parameters, latency, live subscribers."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "iot_query_requests", "query API requests", ["route", "status"], registry=r
        )
        self.bad_parameters = Counter(
            "iot_query_bad_parameters",
            "requests refused for a bad parameter",
            ["parameter"],
            registry=r,
        )
        self.latency = Histogram(
            "iot_query_seconds",
            "query API answer time (pull queries)",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=r,
        )
        self.subscribers = Gauge(
            "iot_query_sse_subscribers", "open Server-Sent Events streams", registry=r
        )
        self.disconnects = Counter(
            "iot_query_sse_disconnects",
            "streams the server ended, by reason",
            ["reason"],
            registry=r,
        )
