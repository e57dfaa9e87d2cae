"""Direct mode: the gateway as the devices' own MQTT server (3.1, 3.1.1 and 5.0)."""

from iot_gateway.edge.server import EdgeServer

__all__ = ["EdgeServer"]
