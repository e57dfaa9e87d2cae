"""Commands to devices in direct mode: every gateway process reads every command record.

A device's session lives on one process at a time; the process holding it delivers the
command at QoS 1 at once if the device is connected, or when it reconnects (a persistent
session) unless the command expired by then. A process without the device's session
passes the command over. Reading starts at the end of the topic when the process starts.
"""

from __future__ import annotations

from collections.abc import Callable

from iot_gateway.config import GatewayConfig
from iot_gateway.downlink import Command, CommandReader, command_consumer, retrying
from iot_gateway.metrics import GatewayMetrics

Deliver = Callable[[Command], int]
"""Hands a command to the sessions subscribed to its topic; how many took it."""


class EdgeDownlink:
    """Runs until cancelled; Kafka and registry failures restart it after a pause."""

    def __init__(
        self,
        config: GatewayConfig,
        commands: CommandReader,
        deliver: Deliver,
        metrics: GatewayMetrics,
    ) -> None:
        self._config = config
        self._commands = commands
        self._deliver = deliver
        self._metrics = metrics
        self.retry_delay_s = 1.0
        self.reading = False
        """True once the consumer knows where it reads from (commands from then on arrive)."""

    async def run(self) -> None:
        await retrying(self._consume, self._metrics, self.retry_delay_s)

    async def _consume(self) -> None:
        consumer = command_consumer(self._config, self._config.edge.instance, None)
        await consumer.start()
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=200)
                self.reading = True
                for records in batches.values():
                    for record in records:
                        command = await self._commands.read(record.value, record.key)
                        if command is not None and self._deliver(command):
                            self._commands.sent(command)
        finally:
            self.reading = False
            await consumer.stop()
