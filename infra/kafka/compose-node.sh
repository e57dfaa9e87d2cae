#!/bin/sh
# One node of compose.yaml's Kafka cluster, run in the apache/kafka image instead of its own
# start-up, which formats the log dir without SCRAM users: a secured KRaft cluster needs the
# admin's SCRAM credential in the log from the start (KIP-900, `--add-scram`), or no broker
# can authenticate to another. Like the image, it turns each KAFKA_* variable into a
# server.property (KAFKA_ dropped, lower case, `_` -> `.`, `__` -> `_`, `___` -> `-`).
#
#   CLUSTER_ID      the cluster's id (the same on every node)
#   ADMIN_PASSWORD  the admin's password: its SCRAM credential, and its client config for
#                   the healthcheck (/tmp/kafka/admin.properties)
#   NODE_BIN, NODE_RUN  Kafka's scripts (/opt/kafka/bin) and where the generated files go
#                   (/tmp/kafka); the unit tests point them elsewhere
set -eu
: "${CLUSTER_ID:?the cluster id is not set}"
: "${ADMIN_PASSWORD:?the admin password is not set}"
: "${KAFKA_LOG_DIRS:?KAFKA_LOG_DIRS is not set}"

bin=${NODE_BIN:-/opt/kafka/bin}
run=${NODE_RUN:-/tmp/kafka}
umask 077  # both files hold the admin's password
mkdir -p "$run"
config=$run/server.properties
: > "$config"
env | while IFS= read -r line; do
  name=${line%%=*}
  case "$name" in
    KAFKA_VERSION | KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | \
    KAFKA_GC_LOG_OPTS | KAFKA_LOG4J_OPTS | KAFKA_JMX_OPTS | KAFKA_JMX_HOSTNAME | \
    KAFKA_LOG4J_ROOT_LOGLEVEL | KAFKA_LOG4J_LOGGERS | KAFKA_TOOLS_LOG4J_LOGLEVEL) ;;
    KAFKA_*)
      key=$(printf '%s' "${name#KAFKA_}" | tr '[:upper:]' '[:lower:]' \
        | sed -e 's/_/./g' -e 's/\.\.\./-/g' -e 's/\.\./_/g')
      printf '%s=%s\n' "$key" "${line#*=}" >> "$config"
      ;;
  esac
done

cat > "$run/admin.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$ADMIN_PASSWORD";
PROPERTIES

if [ ! -f "$KAFKA_LOG_DIRS/meta.properties" ]; then
  "$bin/kafka-storage.sh" format --cluster-id "$CLUSTER_ID" --config "$config" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$ADMIN_PASSWORD]"
fi
exec "$bin/kafka-server-start.sh" "$config"
