"""The simulated device against the real Mosquitto: what counts as delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
import pytest

from devstack import DevStackSettings, SecuredStack
from devstack.simulator import Simulation, SimulationSettings
from tests.clients import mqtt_login_kwargs


async def test_a_publish_nobody_subscribed_to_is_sent_again_until_someone_takes_it(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    """Mosquitto PUBACKs with reason code 16 and drops a message no subscription matches
    (as after a restart, before the gateways subscribed again); the device must not count
    that as delivered."""
    prefix = unique("sim").replace(".", "-")
    pattern = f"{prefix}/devices/+/telemetry"
    simulation = Simulation(
        SimulationSettings(
            devices=1,
            rate=50,
            count=1,
            host=settings.host,
            port=settings.broker_port,  # Mosquitto: it answers 16 when nobody subscribed
            prefix=prefix,
            topic_template=f"{prefix}/devices/{{device_id}}/telemetry",
            **mqtt_login_kwargs(settings),
        ),
        progress=None,
    )
    running = asyncio.create_task(simulation.run())
    async with asyncio.timeout(20):
        while simulation.report.unrouted < 2:  # noqa: ASYNC110 - dropped, and sent again
            await asyncio.sleep(0.05)
    assert simulation.report.acked == 0
    async with aiomqtt.Client(
        settings.host,
        settings.broker_port,
        protocol=aiomqtt.ProtocolVersion.V5,
        **mqtt_login_kwargs(settings),
    ) as subscriber:
        await subscriber.subscribe(pattern, qos=1)
        async with asyncio.timeout(20):
            message = await anext(aiter(subscriber.messages))
        report = await running
    assert report.acked == 1
    assert report.failed == 0
    assert str(message.topic).startswith(f"{prefix}/devices/{prefix}-00000/")


async def test_a_publish_the_broker_refuses_is_a_failure_not_an_acknowledgement(
    settings: DevStackSettings, unique: Callable[[str], str]
) -> None:
    """A device publishing under another device's topic gets PUBACK 0x87 (not authorized)
    from the secured Mosquitto: the simulator must count it failed and log nothing."""
    if not settings.secure:
        pytest.fail("the dev stack runs unsecured (IOT_SECURE=false): nothing is refused")
    prefix = unique("sim").replace(".", "-")
    device_id = f"{prefix}-00000"
    stack = SecuredStack(settings)
    issued, _ = stack.add_device(device_id)
    try:
        simulation = Simulation(
            SimulationSettings(
                devices=1,
                rate=50,
                count=1,
                host=settings.host,
                port=settings.mqtt_port,
                prefix=prefix,
                topic_template="devices/someone-else/telemetry",
                device_passwords={device_id: issued.password},
            ),
            progress=None,
        )
        report = await asyncio.wait_for(simulation.run(), 30)
    finally:
        stack.revoke_device(device_id)
    assert (report.acked, report.failed, report.connect_failures) == (0, 1, 0)
