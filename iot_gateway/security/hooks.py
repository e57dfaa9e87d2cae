"""Policy checks for the platform's own processes, shaped like their hook points.

:func:`ingest_authorize` fits the gateway's ``iot_gateway.gateway.ingest.Authorize`` hook
(``(device_id, route, topic) -> None | reason``): the device a topic names must itself be
allowed to publish on that topic. With the broker enforcing the same policy this is defence
in depth: should Mosquitto's files ever disagree with the policy, a device still cannot feed
another device's key, and the message lands in the DLQ as ``unauthorized`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable

from iot_gateway.policy import Authorizer, MqttAction, MqttTopic

__all__ = ["IngestAuthorize", "ingest_authorize"]

IngestAuthorize = Callable[[str, object, str], str | None]
"""``(device_id, route, topic) -> None`` when allowed, else the reason it is not."""


def ingest_authorize(authorizer: Authorizer) -> IngestAuthorize:
    """The gateway hook deciding ``device_id`` publish ``topic`` with ``authorizer``.

    Pure and cheap (decisions are memoised by the authorizer); never raises for bad input.
    """

    def authorize(device_id: str, route: object, topic: str) -> str | None:
        decision = authorizer.authorize(device_id, MqttAction.PUBLISH, MqttTopic(topic))
        return None if decision.allowed else decision.reason

    return authorize
