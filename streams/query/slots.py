"""Slots for expensive requests (streams, history scans): a cap for the server and one per
client, so that one client cannot take every slot."""

from __future__ import annotations

from collections import Counter
from typing import Literal

__all__ = ["ClientSlots", "Refusal"]

Refusal = Literal["busy", "client_limit"]
"""Why a slot was refused: the server is full, or this client is."""


class ClientSlots:
    """Counts held slots, in total and per client (a token's principal, else an address)."""

    def __init__(self, limit: int, per_client: int | None = None) -> None:
        self.limit = limit
        self.per_client = limit if per_client is None else per_client
        self.open = 0
        self._by_client: Counter[str] = Counter()

    def take(self, client: str = "") -> Refusal | None:
        """Takes a slot for ``client``; None when taken, else why not."""
        if self.open >= self.limit:
            return "busy"
        if self._by_client[client] >= self.per_client:
            return "client_limit"
        self.open += 1
        self._by_client[client] += 1
        return None

    def give_back(self, client: str = "") -> None:
        """Returns a slot ``take`` gave ``client`` (exactly once per slot)."""
        self.open -= 1
        self._by_client[client] -= 1
        if self._by_client[client] <= 0:
            del self._by_client[client]
