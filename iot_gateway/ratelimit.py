"""Per-device token buckets, so that one flooding device cannot starve the others."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class DeviceRateLimiter:
    """Allows each device ``rate`` messages per second with bursts up to ``burst``.

    Memory is bounded: at most ``max_devices`` buckets are kept, the least recently used are
    dropped (a dropped device starts again with a full bucket, which only errs on allowing).
    ``rejected`` counts refusals per device for the same bounded set of devices.
    """

    def __init__(
        self,
        rate: float,
        burst: float,
        clock: Callable[[], float],
        max_devices: int = 100_000,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_devices = max_devices
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self.rejected: OrderedDict[str, int] = OrderedDict()

    def wait_s(self, device_id: str) -> float:
        """Takes one token for ``device_id`` and returns 0.0, or, when its bucket is empty,
        takes nothing and returns how long until it holds one (for back-pressure)."""
        bucket = self._refill(device_id)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    def _refill(self, device_id: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[device_id] = bucket
            if len(self._buckets) > self._max_devices:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(device_id)
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
        return bucket

    def allow(self, device_id: str) -> bool:
        """Takes one token for ``device_id``; False (and counted) when its bucket is empty."""
        if self.wait_s(device_id) == 0.0:
            return True
        self.rejected[device_id] = self.rejected.get(device_id, 0) + 1
        self.rejected.move_to_end(device_id)
        if len(self.rejected) > self._max_devices:
            self.rejected.popitem(last=False)
        return False
