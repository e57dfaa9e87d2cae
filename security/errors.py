"""Errors of security enforcement: one root, :class:`SecurityError`.

Messages are for the operator and say what to do next; they never contain a password or a
token. ``retriable`` is True where running the same command again can succeed (a server
was unreachable); bad input and corrupt state files fail the same way every time.
"""

from __future__ import annotations


class SecurityError(Exception):
    """Root of every error ``security`` raises."""

    retriable = False


class InvalidIdError(SecurityError, ValueError):
    """A device id or principal id the policy would refuse (``/ + # , ; :``, NUL, ...)."""


class DeviceError(SecurityError):
    """A device that is already registered, or not registered, for ``add`` / ``revoke``."""


class TokenError(SecurityError):
    """An HTTP token that cannot be issued (principal is no ``api_client``) or revoked."""


class StoreError(SecurityError):
    """A state file (secrets, devices, tokens) is unreadable or not what this code wrote."""


class TlsError(SecurityError):
    """The local CA or the broker's certificate cannot be created or read."""


class NotSecureError(SecurityError):
    """A command needs the secured stack and it runs with ``IOT_SECURE=false``."""


class ApplyError(SecurityError):
    """A server refused or did not answer while the policy was applied.

    Applying is idempotent, so once the server is back the same command converges.
    """

    retriable = True
