"""The gateway's MQTT 5 session: persistent, on shared subscriptions, acknowledged by hand.

aiomqtt does not expose paho-mqtt's manual acknowledgement, so this module, and only this
module, reaches the paho client under it (``aiomqtt.Client._client``).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from iot_gateway.config import MqttSettings


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


class InboundFlow:
    """Stops reading the broker's socket while too much is in flight; resumes at half.

    MQTT 5's Receive Maximum should hold the broker back, but Mosquitto 2.0.x does not
    enforce it towards subscribers, so the gateway enforces its own bound. The flow takes
    over aiomqtt's socket reader: after every read it counts the messages received and not
    yet acknowledged (queued plus in flight); at ``limit`` it stops reading (TCP flow control
    then stops the broker, whose session queue keeps the backlog), and reading resumes when
    they fall to half. A pause longer than the keepalive ends the connection; the broker then
    redelivers everything unacknowledged on the next one.
    """

    def __init__(
        self, client: aiomqtt.Client, limit: int, on_change: Callable[[bool], object]
    ) -> None:
        self._client = client
        self._on_change = on_change
        self._paho = client._client
        self._queue = client._queue
        self._limit = max(2, limit)
        self._loop = asyncio.get_running_loop()
        self._in_flight = 0
        self.paused = False
        sock = self._paho.socket()
        if sock is not None:  # replace aiomqtt's reader with one that checks the bound
            self._loop.remove_reader(sock.fileno())
            self._loop.add_reader(sock.fileno(), self._read)

    def _read(self) -> None:
        try:
            self._paho.loop_read()
        except Exception as exc:
            disconnected = self._client._disconnected
            if not disconnected.done():
                disconnected.set_exception(exc)
            return
        self._check()

    def update(self, in_flight: int) -> None:
        """Re-evaluates with ``in_flight`` messages taken and not yet acknowledged."""
        self._in_flight = in_flight
        self._check()

    def _check(self) -> None:
        backlog = self._in_flight + self._queue.qsize()
        if not self.paused and backlog >= self._limit:
            sock = self._paho.socket()
            if sock is not None:
                self._loop.remove_reader(sock.fileno())
                self.paused = True
                self._on_change(True)
        elif self.paused and backlog <= self._limit // 2:
            self.resume()

    def resume(self) -> None:
        """Reads the socket again (also when the session ends)."""
        if not self.paused:
            return
        self.paused = False
        self._on_change(False)
        sock = self._paho.socket()
        if sock is not None:
            self._loop.add_reader(sock.fileno(), self._read)
