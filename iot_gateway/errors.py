"""Errors of the gateway."""

from __future__ import annotations


class GatewayError(Exception):
    """Root of the gateway's errors; ``retriable`` says whether trying again can help."""

    retriable = False


class ConfigError(GatewayError):
    """The gateway configuration is invalid; the message names the key and the problem."""


class ProduceFailedError(GatewayError):
    """A record could not be written to Kafka; the session restarts without acknowledging it."""

    retriable = True
