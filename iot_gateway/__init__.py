"""The ingest side of the platform: MQTT to Kafka bridge, contracts, policy, ``iotctl``."""

__all__: list[str] = []
