"""Errors of the security policy: one root, one subclass per kind of bad input.

Every error carries a human ``reason`` (and a line number where a file was read), so a CLI
can print it as is and a server can return it as data. Nothing here is retriable: the same
input fails the same way every time.
"""

from __future__ import annotations


class PolicyError(Exception):
    """Root of every error the policy package raises (none is retriable)."""

    retriable = False


class TopicError(PolicyError, ValueError):
    """An MQTT topic name or topic filter breaks MQTT 5 §4.7 (or the level guard).

    ``reason`` says which rule was broken; ``topic`` is the offending input, shortened for
    display when it is hostile (very long).
    """

    def __init__(self, reason: str, topic: str | bytes) -> None:
        suffix = "" if len(topic) <= 80 else f"... ({len(topic)} long)"
        super().__init__(f"{reason}: {topic[:80]!r}{suffix}")
        self.reason = reason
        self.topic = topic


class PrincipalError(PolicyError, ValueError):
    """A principal id, group or role name cannot be used safely on MQTT, Kafka or HTTP."""

    def __init__(self, reason: str, value: object) -> None:
        super().__init__(f"{reason}: {value!r}")
        self.reason = reason
        self.value = value


class PolicyLoadError(PolicyError):
    """The policy file is malformed; ``line`` (1-based) points at the offending node."""

    def __init__(self, reason: str, *, line: int | None, source: str = "<policy>") -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {reason}")
        self.reason = reason
        self.line = line
        self.source = source


class GenerationError(PolicyError):
    """The policy cannot be compiled faithfully for a target system (Mosquitto, Kafka).

    Raised instead of emitting a file whose decisions would differ from the engine's.
    """

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"line {line}: {reason}")
        self.reason = reason
        self.line = line


class MosquittoAclError(PolicyError):
    """A Mosquitto ``acl_file`` is invalid (Mosquitto would refuse it) or cannot be imported
    with identical decisions; ``line`` is the acl_file line."""

    def __init__(self, reason: str, *, line: int | None = None) -> None:
        super().__init__(reason if line is None else f"acl_file line {line}: {reason}")
        self.reason = reason
        self.line = line


class RequestError(PolicyError, ValueError):
    """A textual request (``--resource`` / ``--action`` on the CLI) cannot be parsed."""
