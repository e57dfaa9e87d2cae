"""How a time reads in the platform's JSON answers: an RFC 3339 UTC string and its epoch ms.

Every time an answer carries comes as two fields: ``<name>``, an RFC 3339 string in UTC with
milliseconds (``"2026-12-05T14:31:14.344Z"``) for people and tools that read dates, and
``<name>_ms``, the same instant as integer epoch milliseconds, exact, for scripts that
compute with it. The platform keeps times as epoch milliseconds (Avro ``timestamp-millis``),
so the string is derived from the integer and both always name the same instant; a time
read back (:func:`epoch_ms`) gives the same integer.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["MAX_MS", "MIN_MS", "epoch_ms", "rfc3339", "time_fields"]

_EPOCH = dt.datetime(1970, 1, 1)  # naive: the string adds its own Z
_ONE_MS = dt.timedelta(milliseconds=1)

MIN_MS = -62_135_596_800_000
"""0001-01-01T00:00:00.000Z: RFC 3339 has four-digit years only."""
MAX_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z."""


def rfc3339(ms: int) -> str:
    """``ms`` (epoch milliseconds) as ``YYYY-MM-DDTHH:MM:SS.sssZ``; ValueError outside the
    years 1 to 9999, which RFC 3339 cannot write."""
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"{ms} ms is outside the years 1 to 9999")
    moment = _EPOCH + dt.timedelta(milliseconds=ms)  # exact: no float on the way
    return moment.isoformat(timespec="milliseconds") + "Z"


def epoch_ms(moment: dt.datetime) -> int:
    """An aware datetime as epoch milliseconds, exactly (finer digits dropped toward the past).

    Not ``int(moment.timestamp() * 1000)``: through a float, about one time in 170 comes out a
    millisecond early, so a time an answer gave, passed back as a parameter, would move.
    """
    return (moment.astimezone(dt.UTC).replace(tzinfo=None) - _EPOCH) // _ONE_MS


def time_fields(name: str, ms: int | None) -> dict[str, object]:
    """``{name: RFC 3339 string, name_ms: ms}``, both None when ``ms`` is.

    A time RFC 3339 cannot write (a record dated before year 1 or after 9999, which only a
    producer other than the gateway can log) keeps its ``name_ms`` and has ``name`` None:
    bad input is data, an answer never fails on it.
    """
    text = None if ms is None or not MIN_MS <= ms <= MAX_MS else rfc3339(ms)
    return {name: text, f"{name}_ms": ms}
