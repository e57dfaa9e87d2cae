#!/usr/bin/env bash
# `make run`: everything is up (make up ran first with IOT_SIMULATE=true); show where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
iotctl=.venv/bin/iotctl
$iotctl dev status || true
host="${IOT_HOST:-127.0.0.1}"
kafka="$host:${IOT_KAFKA_PORT:-9092}"
mqtt_port="${IOT_MQTT_PORT:-1883}"
gateway="http://$host:${IOT_GATEWAY_HTTP_PORT:-9464}"
worker="http://$host:${IOT_WORKER_HTTP_PORT:-9465}"
cat <<TXT

The platform is running: Mosquitto, Kafka, PostgreSQL, the gateway, a stream worker, and
simulated devices publishing to devices/<id>/telemetry. Where to look:

  Gateway counters (received, produced, DLQ by reason, in flight):
    curl -s $gateway/stats          (Prometheus: $gateway/metrics)

  Stream worker (events applied exactly once, skipped duplicates, alerts published):
    curl -s $worker/metrics | grep -E '^iot_streams_(events|outbox)'

  Alerts derived from the readings (temperature-high, humidity-high, battery-low):
    kcat -b $kafka -C -t iot.alerts.v1 -o beginning -e -f 'key=%k headers=%h\n'

  Publish your own reading as a device would (MQTT 5, QoS 1):
    mosquitto_pub -h $host -p $mqtt_port -V mqttv5 -q 1 -t devices/my-device/telemetry \\
      -m '{"seq": 1, "metrics": {"temp_c": 21.5}}'

  Watch the readings arrive in Kafka (Avro, key = device id) and the rejected ones in the DLQ:
    kcat -b $kafka -C -t iot.telemetry.v1 -o -5 -e -f 'key=%k headers=%h\n'
    kcat -b $kafka -C -t iot.telemetry.dlq -o beginning -e -f '%h  %s\n'

  Schemas in the embedded registry:   .venv/bin/iotctl schemas show
  Service state as JSON:              .venv/bin/iotctl dev status --json
  Logs:                               .local/logs/
  Stop everything:                    make down
TXT
