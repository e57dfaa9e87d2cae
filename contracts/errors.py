"""The root of every error the contracts package raises (Avro and the schema registry)."""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ContractsError"]


class ContractsError(Exception):
    """Root of :mod:`contracts`' errors; ``retriable`` says whether the same call may
    succeed later unchanged (a registry that is unreachable now), never for bad input."""

    retriable: ClassVar[bool] = False
