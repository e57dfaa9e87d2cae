from __future__ import annotations

import base64
from pathlib import Path

import pytest

from devstack import DevStackSettings, SettingsError
from devstack.kafka import Kafka, new_cluster_id
from devstack.postgres import Postgres
from devstack.settings import Host


def test_defaults_are_the_usual_ports_and_a_local_dir_in_the_checkout() -> None:
    settings = DevStackSettings.from_env({})
    assert (settings.kafka_port, settings.mqtt_port, settings.pg_port) == (9092, 1883, 5432)
    assert settings.state_dir == settings.project_dir / ".local"
    assert (settings.project_dir / "pyproject.toml").is_file()


def test_every_setting_is_overridable_by_its_iot_variable(tmp_path: Path) -> None:
    settings = DevStackSettings.from_env(
        {
            "IOT_KAFKA_PORT": "19092",
            "IOT_MQTT_PORT": "11883",
            "IOT_PG_PORT": "15432",
            "IOT_LOCAL_DIR": str(tmp_path),
            "IOT_KAFKA_HEAP": "256m",
            "IOT_START_TIMEOUT_S": "12.5",
        }
    )
    assert settings.kafka_bootstrap == "127.0.0.1:19092"
    assert settings.mqtt_url == "mqtt://127.0.0.1:11883"
    assert settings.pg_port == 15432
    assert settings.state_dir == tmp_path
    assert settings.kafka_heap == "256m"
    assert settings.start_timeout_s == 12.5


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IOT_KAFKA_PORT", "kafka", "is not an integer"),
        ("IOT_MQTT_PORT", "70000", "is not a TCP port"),
        ("IOT_PG_PORT", "0", "is not a TCP port"),
        ("IOT_KAFKA_PARTITIONS", "-3", "must be positive"),
        ("IOT_START_TIMEOUT_S", "soon", "is not a number"),
    ],
)
def test_malformed_values_name_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=f"{variable}.*{message}"):
        DevStackSettings.from_env({variable: value})


def test_a_cluster_of_three_nodes_replicates_three_times_and_needs_two_in_sync() -> None:
    single = DevStackSettings.from_env({})
    assert (single.kafka_replication, single.kafka_min_insync) == (1, 1)
    cluster = DevStackSettings.from_env({"IOT_KAFKA_BROKERS": "3", "IOT_KAFKA_PORT": "19092"})
    assert [(n.node_id, n.port, n.controller_port) for n in cluster.kafka_nodes] == [
        (1, 19092, 9093),
        (2, 19102, 9103),
        (3, 19112, 9113),
    ]
    assert cluster.kafka_bootstrap == "127.0.0.1:19092,127.0.0.1:19102,127.0.0.1:19112"
    assert (cluster.kafka_replication, cluster.kafka_min_insync) == (3, 2)
    five = DevStackSettings.from_env({"IOT_KAFKA_BROKERS": "5"})
    assert (five.kafka_replication, five.kafka_min_insync) == (3, 2)


def test_a_kafka_node_count_out_of_range_is_refused() -> None:
    with pytest.raises(SettingsError, match="IOT_KAFKA_BROKERS=12 is not a node count"):
        DevStackSettings.from_env({"IOT_KAFKA_BROKERS": "12"})


def test_the_password_is_masked_when_printed() -> None:
    settings = DevStackSettings.from_env({"IOT_PG_PASSWORD": "s3cret-value"})
    assert "s3cret-value" in settings.pg_dsn()
    assert "s3cret-value" not in settings.pg_dsn(masked=True)
    assert "s3cret-value" not in repr(settings)


def test_kraft_cluster_ids_are_distinct_22_char_base64_uuids() -> None:
    ids = {new_cluster_id() for _ in range(2000)}  # about 31 would start with "-" unchecked
    assert len(ids) == 2000
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")  # the storage tool would take it for an option
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_mosquitto_runs_on_the_devices_port_only_in_bridge_mode() -> None:
    direct = DevStackSettings()
    assert (direct.gateway_mode, direct.runs_mosquitto) == ("direct", False)
    assert (direct.broker_port, direct.broker_tls_port) == (1884, 8884)
    assert DevStackSettings.from_env({"IOT_MOSQUITTO": "true"}).runs_mosquitto
    bridge = DevStackSettings.from_env({"IOT_GATEWAY_MODE": "bridge"})
    assert bridge.runs_mosquitto
    assert (bridge.broker_port, bridge.broker_tls_port) == (1883, 8883)


def test_an_unknown_gateway_mode_is_refused() -> None:
    with pytest.raises(SettingsError, match="direct or bridge"):
        DevStackSettings.from_env({"IOT_GATEWAY_MODE": "proxy"})


def test_a_cluster_the_stack_does_not_run_is_reached_through_its_own_nodes() -> None:
    servers = "kafka-1:9092,kafka-2:9092,kafka-3:9092"
    settings = DevStackSettings.from_env({"IOT_KAFKA_SERVERS": servers, "IOT_KAFKA_BROKERS": "3"})
    assert settings.kafka_bootstrap == servers
    assert (settings.kafka_replication, settings.kafka_min_insync) == (3, 2)


def test_servers_on_hosts_of_their_own_are_reached_at_their_addresses(tmp_path: Path) -> None:
    hosts = {
        "kafka-2": Host("iotf-kafka-2", "10.77.0.12", "10.77.0.0/24"),
        "postgres": Host("iotf-postgres", "10.77.0.20", "10.77.0.0/24"),
    }
    settings = DevStackSettings(
        local_dir=tmp_path, kafka_brokers=3, server_hosts=tuple(hosts.items()), secure=False
    )
    assert settings.kafka_bootstrap == "127.0.0.1:9092,10.77.0.12:9102,127.0.0.1:9112"
    assert "@10.77.0.20:5432/" in settings.pg_dsn()
    assert settings.address_of("kafka") == "127.0.0.1"
    node = Kafka(settings, 2)
    assert node.endpoint == "10.77.0.12:9102"
    node._write_configs()
    properties = node.config_file.read_text()
    assert "listeners=PLAINTEXT://10.77.0.12:9102,CONTROLLER://10.77.0.12:9103" in properties
    assert "controller.quorum.voters=1@127.0.0.1:9093,2@10.77.0.12:9103,3@127.0.0.1:9113" in (
        properties
    )
    assert "listen_addresses=10.77.0.20" in Postgres(settings).launch().argv
    assert DevStackSettings.from_env({"IOT_SERVER_HOSTS": "ignored"}).server_hosts == ()
