#!/usr/bin/env bash
# `make run`: the stack is up (make up ran first); show what runs and where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
iotctl=.venv/bin/iotctl
$iotctl dev status
kafka="${IOT_HOST:-127.0.0.1}:${IOT_KAFKA_PORT:-9092}"
mqtt_port="${IOT_MQTT_PORT:-1883}"
cat <<TXT

The platform's infrastructure is running. Try it:

  Publish a reading as a device would (MQTT 5, QoS 1):
    mosquitto_pub -h ${IOT_HOST:-127.0.0.1} -p $mqtt_port -V mqttv5 -q 1 \\
      -t devices/dev-001/telemetry -m '{"seq": 1, "ts": 1767225600000, "metrics": {"temp_c": 21.5}}'

  Watch the device topics:
    mosquitto_sub -h ${IOT_HOST:-127.0.0.1} -p $mqtt_port -V mqttv5 -t 'devices/#' -v

  List the Kafka topics the platform owns:
    kcat -b $kafka -L | grep iot.

  Service state as JSON:       .venv/bin/iotctl dev status --json
  Logs:                        .local/logs/
  Stop everything:             make down
TXT
