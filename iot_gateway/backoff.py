"""Retry pacing shared by the gateway's reconnect loops."""

from __future__ import annotations

import random


class Backoff:
    """Exponential backoff with full jitter, reset after a healthy session."""

    def __init__(self, first_s: float = 0.2, cap_s: float = 10.0) -> None:
        self.first_s, self.cap_s, self.attempt = first_s, cap_s, 0

    def next_delay(self) -> float:
        self.attempt += 1
        return random.uniform(0, min(self.cap_s, self.first_s * 2**self.attempt))  # noqa: S311

    def reset(self) -> None:
        self.attempt = 0
