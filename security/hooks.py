"""Policy checks for the platform's own processes, shaped like their hook points.

:func:`ingest_authorize` fits the gateway's ``iot_gateway.ingest.Authorize`` hook
(``(device_id, route, topic) -> None | reason``): the device a topic names must itself be
allowed to publish on that topic. With the broker enforcing the same policy this is defence
in depth: should Mosquitto's files ever disagree with the policy, a device still cannot feed
another device's key, and the message lands in the DLQ as ``unauthorized`` with the reason.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from policy import Authorizer, Decision, MqttAction, MqttTopic, PolicyError, load_policy
from security.devices import DeviceStore
from security.effective import effective_policy
from security.errors import SecurityError

__all__ = [
    "IngestAuthorize",
    "PolicyWatch",
    "SubscribeAuthorize",
    "ingest_authorize",
    "watched_ingest_authorize",
    "watched_subscribe_authorize",
]

log = logging.getLogger("security")

IngestAuthorize = Callable[[str, object, str], str | None]
"""``(principal, route, topic) -> None`` when allowed, else the reason it is not."""

SubscribeAuthorize = Callable[[str, str], str | None]
"""``(principal, topic filter) -> None`` when allowed, else the reason it is not."""


def ingest_authorize(authorizer: Authorizer) -> IngestAuthorize:
    """The gateway hook deciding ``device_id`` publish ``topic`` with ``authorizer``.

    Pure and cheap (decisions are memoised by the authorizer); never raises for bad input.
    """

    def authorize(principal: str, route: object, topic: str) -> str | None:
        decision = authorizer.authorize(principal, MqttAction.PUBLISH, MqttTopic(topic))
        return None if decision.allowed else decision.reason

    return authorize


class PolicyWatch:
    """The effective policy of a policy file plus the registered devices, reloaded when
    either file changes (checked at most every ``check_every_s``), so ``iotctl devices add``
    and ``revoke`` reach a running gateway without a restart.

    A file that fails to load keeps the last good policy in force and is logged once per
    change; at start-up the error is raised, so a gateway never runs without a policy.
    """

    def __init__(
        self,
        policy_file: Path,
        devices_file: Path | None,
        *,
        admin: str | None = None,
        check_every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy_file = policy_file
        self.devices_file = devices_file
        self.admin = admin
        self._check_every_s = check_every_s
        self._clock = clock
        self._stamp = self._mtimes()
        self._authorizer = self._load()
        self._checked_at = clock()

    def _mtimes(self) -> tuple[int, int]:
        def mtime(path: Path | None) -> int:
            if path is None:
                return 0
            try:
                return path.stat().st_mtime_ns
            except FileNotFoundError:
                return 0

        return mtime(self.policy_file), mtime(self.devices_file)

    def _load(self) -> Authorizer:
        path = self.devices_file
        devices = DeviceStore(path).hashes() if path is not None and path.exists() else {}
        return Authorizer(
            effective_policy(load_policy(self.policy_file), devices, admin=self.admin)
        )

    @property
    def authorizer(self) -> Authorizer:
        if self._clock() - self._checked_at >= self._check_every_s:
            self.refresh()
        return self._authorizer

    @property
    def authorize(self) -> Callable[..., Decision]:
        """The current policy's :meth:`Authorizer.authorize`: a watch decides like the
        authorizer of whatever the files say now (for :func:`security.http.bearer_auth`)."""
        return self.authorizer.authorize

    def refresh(self) -> bool:
        """Loads the files again if either changed; True if the policy was replaced."""
        self._checked_at = self._clock()
        stamp = self._mtimes()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self._authorizer = self._load()
        except (PolicyError, SecurityError, OSError) as exc:  # e.g. caught mid-save
            log.warning("security policy not reloaded, the previous one stays: %s", exc)
            return False
        log.info("security policy reloaded from %s", self.policy_file)
        return True


def watched_ingest_authorize(watch: PolicyWatch) -> IngestAuthorize:
    """:func:`ingest_authorize` over the policy ``watch`` keeps current. A denial looks at
    the files once more first, so a device registered a moment ago is not refused while the
    periodic check has yet to notice it."""

    def authorize(principal: str, route: object, topic: str) -> str | None:
        return _decide(watch, principal, MqttAction.PUBLISH, topic)

    return authorize


def watched_subscribe_authorize(watch: PolicyWatch) -> SubscribeAuthorize:
    """May ``principal`` subscribe to ``topic_filter``, under the policy ``watch`` keeps
    current (the gateway's own MQTT server asks this for every SUBSCRIBE)."""

    def authorize(principal: str, topic_filter: str) -> str | None:
        return _decide(watch, principal, MqttAction.SUBSCRIBE, topic_filter)

    return authorize


def _decide(watch: PolicyWatch, principal: str, action: MqttAction, topic: str) -> str | None:
    """A denial looks at the files once more first, so a device registered a moment ago is
    not refused while the periodic check has yet to notice it."""
    resource = MqttTopic(topic)
    decision = watch.authorizer.authorize(principal, action, resource)
    if not decision.allowed and watch.refresh():
        decision = watch.authorizer.authorize(principal, action, resource)
    return None if decision.allowed else decision.reason
