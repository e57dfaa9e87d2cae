"""What simulated devices send, kind by kind, and the counters they keep between runs.

Most devices number their readings (``seq``) and date them (``ts``), as the platform asks.
Real fleets are less tidy, so a :class:`DeviceMix` gives a share of the fleet to each other
kind (the platform's answer in brackets):

* ``boot``: names its boot epoch (``boot``) and reboots now and then: boot + 1, seq from 0 or
  1 again (a new sequence window per epoch);
* ``restarts``: reboots without naming an epoch: seq from 0 or 1 again while its clock runs
  on (a repeated seq with a later ``ts`` is a restart);
* ``no_seq``: dates its readings but does not number them (an event id hashed from the
  payload, so a copy sent again is the same event);
* ``bare``: neither numbers nor dates them (the gateway stamps the time into the event id:
  at least once, a copy sent again is a new event).

Across kinds, a share of the dated devices has a clock that is off (skewed within the
gateway's time band), and now and then a dated reading carries a clock that glitched far
outside it (the gateway dead-letters it as ``implausible_timestamp``).

A device's kind and clock skew follow from the mix (its ``seed``, not a run's) and the
fleet's ids alone, so a fleet keeps its kinds when the simulator restarts.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from iot_gateway.ingest import event_id_for

SEQ_LEASE = 1_000
"""How far ahead the periodic save puts each device's sequence number: a simulator killed
between saves starts past every number it used (a gap the platform reports), never on one
it already sent (a reading the platform would drop as a duplicate event id). A device that
names its boot epoch is saved one epoch ahead instead, and starts in a new one anyway."""

GLITCHED_CLOCKS_MS = (4_102_444_800_000, 946_684_800_000)
"""What a glitched clock reads: 2100-01-01, and 2000-01-01 (a clock that lost its time)."""


class DeviceKind(StrEnum):
    """What a device puts in its readings, and whether it reboots now and then."""

    SEQ = "seq"
    BOOT = "boot"
    RESTARTS = "restarts"
    NO_SEQ = "no_seq"
    BARE = "bare"

    @property
    def numbers(self) -> bool:
        """Sends ``seq``."""
        return self in (DeviceKind.SEQ, DeviceKind.BOOT, DeviceKind.RESTARTS)

    @property
    def dates(self) -> bool:
        """Sends ``ts``."""
        return self is not DeviceKind.BARE

    @property
    def reboots(self) -> bool:
        return self in (DeviceKind.BOOT, DeviceKind.RESTARTS)


@dataclass(frozen=True, slots=True)
class DeviceMix:
    """Shares of the fleet by kind (the rest is ``seq``), of dated devices with a skewed
    clock, and of dated readings whose clock glitched. The default is a tidy fleet."""

    boot: float = 0.0
    restarts: float = 0.0
    no_seq: float = 0.0
    bare: float = 0.0
    skewed: float = 0.0
    skew_ms: tuple[int, int] = (-120_000, 60_000)
    """A skewed clock is off by this much at most, either way (within the gateway's band)."""
    glitches: float = 0.0
    uptime_s: tuple[float, float] = (20.0, 90.0)
    """How long a rebooting device runs between reboots (uniform): far longer than the
    state file's save period, so a device never reboots twice between two saves."""
    seed: int = 0

    def __post_init__(self) -> None:
        shares = (self.boot, self.restarts, self.no_seq, self.bare, self.skewed, self.glitches)
        if not all(0.0 <= share <= 1.0 for share in shares):
            raise ValueError("DeviceMix shares must lie in [0, 1]")
        if self.boot + self.restarts + self.no_seq + self.bare > 1.0:
            raise ValueError("DeviceMix kinds' shares must add up to at most 1")

    def assign(self, device_ids: Iterable[str]) -> dict[str, tuple[DeviceKind, int]]:
        """Each device's kind and clock skew (ms): a function of the ids and the mix."""
        ids = sorted(device_ids)
        rng = random.Random(self.seed)  # noqa: S311 - a simulated fleet, not a secret
        kinds: list[DeviceKind] = []
        for kind, share in (
            (DeviceKind.BOOT, self.boot),
            (DeviceKind.RESTARTS, self.restarts),
            (DeviceKind.NO_SEQ, self.no_seq),
            (DeviceKind.BARE, self.bare),
        ):
            kinds += [kind] * round(share * len(ids))
        kinds += [DeviceKind.SEQ] * (len(ids) - len(kinds))
        rng.shuffle(kinds)
        dated = [i for i, kind in zip(ids, kinds, strict=True) if kind.dates]
        skewed = set(rng.sample(dated, round(self.skewed * len(dated))))
        return {
            device_id: (kind, rng.randint(*self.skew_ms) if device_id in skewed else 0)
            for device_id, kind in zip(ids, kinds, strict=True)
        }


TIDY = DeviceMix()
"""Every device numbers and dates its readings, on a clock that is right, and never reboots."""

REALISTIC = DeviceMix(boot=0.10, restarts=0.10, no_seq=0.10, bare=0.03, skewed=0.20, glitches=0.002)
"""A fleet as they come: a tenth each reboots with and without a boot epoch, a tenth sends
no seq and a few neither seq nor ts, a fifth of the clocks are off, and one dated reading in
500 carries a clock that glitched."""


@dataclass(frozen=True, slots=True)
class Reading:
    """One reading as sent: its payload and what identifies it in the log."""

    payload: bytes
    seq: int | None
    boot: int | None
    ts: int | None
    event_id: str | None
    """The gateway's event id of it; None without seq and ts (the gateway's time joins it)."""
    metrics: Mapping[str, float]

    def ledger(self) -> dict[str, object]:
        """Its ledger fields; the values only where nothing else identifies it."""
        entry: dict[str, object] = {
            "seq": self.seq,
            "boot": self.boot,
            "ts": self.ts,
            "event_id": self.event_id,
        }
        if self.event_id is None:
            entry["metrics"] = dict(self.metrics)
        return entry


class SimulatedDevice:
    """One device's readings: a slow random walk per metric, seq strictly increasing within a
    boot, ``ts`` from its own clock (``skew_ms`` off)."""

    def __init__(
        self,
        device_id: str,
        topic: str,
        kind: DeviceKind,
        skew_ms: int,
        counters: Mapping[str, int],
        rng: random.Random,
    ) -> None:
        self.device_id = device_id
        self.topic = topic
        self.kind = kind
        self.skew_ms = skew_ms
        self.seq = counters.get("seq", 0)
        self.boot: int | None = None
        if kind is DeviceKind.BOOT:  # a start is a boot: a new epoch, seq from 1
            self.boot, self.seq = counters.get("boot", -1) + 1, 0
        self.reboot_at = math.inf
        self._rng = rng
        self._temp = rng.uniform(15, 30)
        self._humidity = rng.uniform(30, 70)
        self._battery = rng.uniform(60, 100)

    def counters(self, ahead: bool) -> dict[str, int]:
        """What to keep for the next run (``ahead``: see :data:`SEQ_LEASE`)."""
        if self.boot is not None:
            return {"seq": self.seq, "boot": self.boot + (1 if ahead else 0)}
        return {"seq": self.seq + (SEQ_LEASE if ahead else 0)}

    def plan_reboot(self, now: float, uptime_s: tuple[float, float]) -> None:
        """When (monotonic) a rebooting kind reboots next; never for the others."""
        if self.kind.reboots:
            self.reboot_at = now + self._rng.uniform(*uptime_s)

    def reboot(self) -> None:
        """A new sequence from 0 or 1; a device that names its boot epoch raises it."""
        self.seq = self._rng.choice((-1, 0))
        if self.boot is not None:
            self.boot += 1

    def reading(self, now_ms: int, *, glitch: bool = False) -> Reading:
        """The next reading; ``glitch`` dates it by a clock far off (a dated kind only)."""
        rng = self._rng
        self._temp += rng.gauss(0, 0.3)
        self._humidity = min(100.0, max(0.0, self._humidity + rng.gauss(0, 0.5)))
        self._battery = max(0.0, self._battery - rng.uniform(0, 0.01))
        if rng.random() < 0.002:  # an occasional spike, so alert rules have something to see
            self._temp += rng.choice((-1, 1)) * rng.uniform(15, 25)
        metrics = {
            "temp_c": round(self._temp, 2),
            "humidity_pct": round(self._humidity, 2),
            "battery_pct": round(self._battery, 3),
        }
        document: dict[str, object] = {}
        seq = ts = None
        if self.kind.numbers:
            self.seq += 1
            seq = document["seq"] = self.seq
        if self.boot is not None:
            document["boot"] = self.boot
        if self.kind.dates:
            clock = rng.choice(GLITCHED_CLOCKS_MS) if glitch else now_ms + self.skew_ms
            ts = document["ts"] = clock
        document |= {"metrics": metrics, "attributes": {"fw": "1.4.2"}}
        payload = json.dumps(document, separators=(",", ":")).encode()
        event_id = None
        if seq is not None or ts is not None:
            event_id = event_id_for(self.device_id, seq, self.boot, self.topic, payload, None)
        return Reading(payload, seq, self.boot, ts, event_id, metrics)


def load_counters(path: Path | None) -> dict[str, dict[str, int]]:
    """Each device's counters from the state file (a bare number is a ``seq``)."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(k): {"seq": int(v)} if isinstance(v, int) else {n: int(c) for n, c in v.items()}
        for k, v in data.items()
    }


def save_counters(path: Path | None, devices: Iterable[SimulatedDevice], ahead: bool) -> None:
    """Writes the devices' counters (atomically), keeping other devices' entries."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = load_counters(path) | {d.device_id: d.counters(ahead) for d in devices}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, sort_keys=True))
    tmp.replace(path)
