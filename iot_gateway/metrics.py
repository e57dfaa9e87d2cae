"""The gateway's Prometheus metrics, in a registry of their own per gateway instance."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from iot_gateway.clock import received_now
from iot_gateway.ingest import REASONS


class GatewayMetrics:
    """Counters, gauges and the produce-latency histogram of one gateway."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "iot_gateway_received", "MQTT messages received", ["route"], registry=r
        )
        self.produced = Counter(
            "iot_gateway_produced", "records acknowledged by Kafka", ["topic"], registry=r
        )
        self.rejected = Counter(
            "iot_gateway_dlq", "messages sent to the DLQ, by reason", ["reason"], registry=r
        )
        for reason in REASONS:
            self.rejected.labels(reason)
        Gauge(
            "iot_gateway_clock_steps_back",
            "times the wall clock was found behind the receive clock (it holds its pace)",
            registry=r,
        ).set_function(lambda: received_now.steps_back)
        self.acked = Counter("iot_gateway_pubacks", "PUBACKs sent to the broker", registry=r)
        self.leaders_rediscovered = Counter(
            "iot_gateway_leaders_rediscovered",
            "partitions whose new leader was found after their old one held records",
            registry=r,
        )
        self.throttled = Counter(
            "iot_gateway_throttled_seconds",
            "time spent holding messages of devices over their rate (back-pressure)",
            registry=r,
        )
        self.in_flight = Gauge(
            "iot_gateway_in_flight", "messages received and not yet acknowledged", registry=r
        )
        self.produce_latency = Histogram(
            "iot_gateway_produce_latency_seconds",
            "from MQTT receipt (the sink taking the record) to Kafka's acknowledgement, "
            "on the monotonic clock",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.mqtt_connected = Gauge(
            "iot_gateway_mqtt_connected", "1 while connected to the broker", registry=r
        )
        self.kafka_connected = Gauge(
            "iot_gateway_kafka_connected", "1 while the Kafka producer runs", registry=r
        )
        self.mqtt_paused = Gauge(
            "iot_gateway_mqtt_reading_paused",
            "1 while the broker's socket is not read: receive_maximum messages are in flight",
            registry=r,
        )
        self.connections = Gauge(
            "iot_gateway_edge_connections", "open device connections (direct mode)", registry=r
        )
        self.sessions = Gauge(
            "iot_gateway_edge_sessions",
            "MQTT sessions held, connected or not (direct mode)",
            registry=r,
        )
        self.connects = Counter(
            "iot_gateway_edge_connects",
            "CONNECT packets answered, by CONNACK reason code (0x00: accepted)",
            ["code"],
            registry=r,
        )
        self.disconnects = Counter(
            "iot_gateway_edge_disconnects",
            "connections ended by the server, by MQTT 5 reason code, or by the client",
            ["reason"],
            registry=r,
        )
        self.protocol_errors = Counter(
            "iot_gateway_edge_protocol_errors",
            "malformed or forbidden packets from clients, by MQTT 5 reason code",
            ["code"],
            registry=r,
        )
        self.reconnects = Counter(
            "iot_gateway_reconnects", "reconnections, by side", ["side"], registry=r
        )
        self.downlink = Counter(
            "iot_gateway_downlink",
            "commands delivered to devices, by outcome",
            ["outcome"],
            registry=r,
        )
