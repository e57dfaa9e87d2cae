"""Errors of the local development stack."""

from __future__ import annotations


class DevStackError(Exception):
    """Root of every error the dev stack raises; the message says what to do next."""

    retriable = False


class SettingsError(DevStackError):
    """An ``IOT_*`` environment variable has a value that cannot be used."""


class ServiceStartError(DevStackError):
    """A service did not start or did not answer in time; the message names its log file."""


class PortInUseError(DevStackError):
    """The port a service should listen on is taken by a process the dev stack did not start."""
