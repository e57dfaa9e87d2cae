#!/usr/bin/env bash
# `make run`: everything is up (make up ran first with IOT_SIMULATE=true); show where to look.
set -euo pipefail
cd "$(dirname "$0")/.."
iotctl=.venv/bin/iotctl
$iotctl dev status || true
state="${IOT_LOCAL_DIR:-.local}"
host="${IOT_HOST:-127.0.0.1}"
mqtt_port="${IOT_MQTT_PORT:-1883}"
gateway="http://$host:${IOT_GATEWAY_HTTP_PORT:-9464}"
worker="http://$host:${IOT_WORKER_HTTP_PORT:-9465}"
auth=""
if [ "${IOT_SECURE:-true}" != "false" ]; then
  # A bearer token for the `dashboard` principal (config/policy.yaml), kept for later runs.
  token_file="$state/security/dashboard.token"
  if [ ! -s "$token_file" ]; then
    (umask 077 && $iotctl tokens add dashboard --json |
      .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["token"])' >"$token_file")
  fi
  auth="-H \"Authorization: Bearer \$(cat $token_file)\" "
fi
first_device="sim-00000"
# Wait for the first simulated reading to be queryable, and say how long it took.
.venv/bin/python - "$worker" "${token_file:-}" "${RUN_STARTED:-}" <<'PY'
import json, pathlib, sys, time, urllib.request
worker, token_file, started = sys.argv[1], sys.argv[2], sys.argv[3]
headers = {"Authorization": f"Bearer {pathlib.Path(token_file).read_text().strip()}"} if token_file else {}
since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(float(started) if started else time.time()))
deadline = time.time() + 120
while time.time() < deadline:
    try:  # a reading published since `make run` started, not one left from an earlier run
        url = f"{worker}/api/devices?limit=1&seen_since={since}"
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=2) as response:
            if json.load(response).get("devices"):
                since = f"{time.time() - float(started):.1f}s after `make run` started" if started else "now"
                print(f"\nFirst simulated reading queryable: {since}.")
                break
    except OSError:
        pass
    time.sleep(0.2)
else:
    print("\nNo reading queryable after 120s: see the logs in .local/logs/ (gateway.log, worker.log).")
PY
cat <<TXT

The platform is running: Kafka, PostgreSQL (secured: every process logs in as its own
principal), the gateway (the devices' MQTT server: a PUBACK means the reading is in Kafka), a
stream worker with the query API, and simulated devices publishing to devices/<id>/telemetry.
Where to look:

  The operator's pages (fleet overview, a device, the alerts; live):
    $worker/ui          token for the pages: $(if [ -n "$auth" ]; then echo "cat $token_file"; else echo "none needed"; fi)
    (to send commands from a device's page: a token of \`$iotctl tokens add operator\`)

  Query the stream state over HTTP (JSON; OpenAPI at $worker/openapi.json):
    curl -s ${auth}"$worker/api/devices?limit=5"
    curl -s ${auth}"$worker/api/devices/$first_device?consistency=strong"
    curl -s ${auth}"$worker/api/devices/$first_device/aggregates?metric=temp_c&resolution=1m&from=\$(date -u -d '-10 min' +%FT%TZ)&to=\$(date -u +%FT%TZ)"
    curl -sN ${auth}"$worker/api/devices/$first_device/stream"      (live readings, Server-Sent Events)

  Publish your own reading as a device (MQTT 5, QoS 1):
    $iotctl devices add my-device             (prints its password once)
    mosquitto_pub -h $host -p $mqtt_port -u my-device -P '<password>' -V mqttv5 -q 1 \\
      -t devices/my-device/telemetry -m '{"seq": 1, "metrics": {"temp_c": 21.5}}'
    (over TLS: -p ${IOT_MQTTS_PORT:-8883} --cafile $state/security/tls/ca.crt)

  Kafka as the stack's admin (kcat reads $state/kcat.conf):
    kcat -F $state/kcat.conf -C -t iot.telemetry.v1 -o -5 -e -f 'key=%k headers=%h\n'
    kcat -F $state/kcat.conf -C -t iot.telemetry.dlq -o beginning -e -f '%h  %s\n'
    kcat -F $state/kcat.conf -C -t iot.alerts.v1 -o beginning -e -f 'key=%k headers=%h\n'

  Gateway counters:        curl -s $gateway/stats      (Prometheus: $gateway/metrics)
  Worker metrics:          curl -s $worker/metrics | grep -E '^iot_streams_(events|outbox)'
  Verify state by replay:  $iotctl replay rebuild --verify     (a shadow rebuilt from the log, compared)
  Service state as JSON:   $iotctl dev status --json
  Logs:                    $state/logs/
  Stop everything:         make down
TXT
