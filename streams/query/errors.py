"""Errors of the query API; each maps to one HTTP status and a JSON body naming the cause."""

from __future__ import annotations

from streams.errors import StreamsError

__all__ = [
    "BadParameterError",
    "NotCaughtUpError",
    "QueryError",
    "UnavailableError",
    "UnknownDeviceError",
]


class QueryError(StreamsError):
    """Root of the query API's errors; ``status`` is the HTTP status it answers with."""

    status = 500
    error = "internal"

    def body(self) -> dict[str, object]:
        return {"error": self.error, "reason": str(self)}


class BadParameterError(QueryError):
    """A query parameter is missing, malformed or out of range; names the parameter."""

    status = 400
    error = "bad_parameter"

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter

    def body(self) -> dict[str, object]:
        return {**super().body(), "parameter": self.parameter}


class UnknownDeviceError(QueryError):
    """No projection row exists for the device (at the position the answer reflects)."""

    status = 404
    error = "unknown_device"


class NotCaughtUpError(QueryError):
    """A strong read timed out before the store applied the partition's end offset.

    Retriable: the store is behind, not wrong; ``lag`` is what it still had to apply.
    """

    status = 504
    error = "not_caught_up"
    retriable = True

    def __init__(self, message: str, *, lag: int, positions: dict[str, object]) -> None:
        super().__init__(message)
        self.lag = lag
        self.positions = positions

    def body(self) -> dict[str, object]:
        return {**super().body(), "lag": self.lag, "consistency": self.positions}


class UnavailableError(QueryError):
    """The worker cannot serve this now (a topic missing, too many streams); retriable."""

    status = 503
    error = "unavailable"
    retriable = True
