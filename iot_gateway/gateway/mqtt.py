"""The gateway's MQTT 5 session: persistent, on shared subscriptions, acknowledged by hand.

aiomqtt does not expose paho-mqtt's manual acknowledgement, so this module, and only this
module, reaches the paho client under it (``aiomqtt.Client._client``).
"""

from __future__ import annotations

import ssl

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from iot_gateway.gateway.config import MqttSettings


def persistent_client(settings: MqttSettings) -> aiomqtt.Client:
    """An MQTT 5 client with clean start off, a session expiry and manual PUBACKs.

    ``receive_maximum`` caps the QoS 1 messages the broker sends before we acknowledge:
    while Kafka is slow or down, the rest wait in the broker's session queue.
    """
    properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    properties.SessionExpiryInterval = settings.session_expiry_s
    properties.ReceiveMaximum = settings.receive_maximum
    tls_context = None
    if settings.ca_file is not None:
        tls_context = ssl.create_default_context(cafile=str(settings.ca_file))
    client = aiomqtt.Client(
        settings.host,
        settings.port,
        identifier=settings.client_id,
        username=settings.username,
        password=settings.password.get_secret_value() if settings.password else None,
        protocol=aiomqtt.ProtocolVersion.V5,
        clean_start=False,
        properties=properties,
        keepalive=settings.keepalive_s,
        tls_context=tls_context,
        timeout=10,
    )
    client._client.manual_ack_set(True)
    return client


def puback(client: aiomqtt.Client, mid: int) -> None:
    """Sends the PUBACK for QoS 1 message ``mid`` of the current connection."""
    client._client.ack(mid, 1)


async def subscribe_all(client: aiomqtt.Client, filters: list[str]) -> None:
    """Subscribes to every filter at QoS 1 in one SUBSCRIBE; raises if the broker refuses one."""
    options = SubscribeOptions(qos=1)
    codes = await client.subscribe([(f, options) for f in filters])
    refused = [
        f"{f} ({code})"
        for f, code in zip(filters, codes, strict=True)
        if getattr(code, "value", 0) >= 0x80
    ]
    if refused:
        raise aiomqtt.MqttError("broker refused subscriptions: " + ", ".join(refused))
