"""The fold of the sessions topic: claims give epochs, stale holders are fenced."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from iot_gateway.edge.directory import (
    LOG_APPEND_TIME,
    Directory,
    LogClock,
    SessionRecord,
    Takeover,
    claim,
)
from iot_gateway.edge.sessions import Outgoing


def _claim(principal: str = "dev-1", owner: str = "gw-1", *, clean: bool = False) -> bytes:
    return claim(principal=principal, owner=owner, clean_start=clean, expiry_s=60, at_ms=10_000)


def _state(epoch: int, *, owner: str = "gw-1", **changes: object) -> bytes:
    record = SessionRecord(
        "c1", "dev-1", owner, epoch, True, 60, None, {"devices/dev-1/commands": 1}
    )
    document = json.loads(record.update())
    document.update(changes)
    return json.dumps(document).encode()


def test_a_claim_is_a_takeover_at_its_offset_and_carries_the_state_over() -> None:
    directory = Directory()
    assert directory.apply("c1", _claim(), 5) == Takeover("c1", "gw-1", 5)
    claimed = directory.claimed("c1", 5)
    assert claimed is not None
    assert not claimed.present  # nothing before it
    directory.apply("c1", _state(5), 6)
    assert directory.apply("c1", _claim(owner="gw-2"), 9) == Takeover("c1", "gw-2", 9)
    resumed = directory.claimed("c1", 9)
    assert resumed is not None
    assert resumed.present
    assert resumed.record.owner == "gw-2"
    assert resumed.record.epoch == 9
    assert resumed.record.subscriptions == {"devices/dev-1/commands": 1}


def test_an_update_from_a_holder_that_was_taken_over_is_fenced() -> None:
    directory = Directory()
    directory.apply("c1", _claim(), 5)
    directory.apply("c1", _claim(owner="gw-2"), 9)
    directory.apply("c1", _state(5, subscriptions={}), 10)  # the paused gw-1 wakes up
    record = directory.get("c1")
    assert record is not None
    assert (record.owner, record.epoch) == ("gw-2", 9)
    assert directory.fenced == 1


def test_clean_start_another_principal_or_expiry_start_afresh() -> None:
    for later in (
        _claim(clean=True),
        _claim(principal="dev-2"),
        claim(principal="dev-1", owner="gw-1", clean_start=False, expiry_s=60, at_ms=200_000),
    ):
        directory = Directory()
        directory.apply("c1", _claim(), 1)
        directory.apply("c1", _state(1, connected=False, disconnected_at_ms=100_000), 2)
        directory.apply("c1", later, 3)
        claimed = directory.claimed("c1", 3)
        assert claimed is not None
        assert not claimed.present
        assert claimed.record.subscriptions == {}


def test_a_tombstone_forgets_and_garbage_is_counted_not_raised() -> None:
    directory = Directory()
    directory.apply("c1", _claim(), 1)
    directory.apply("c1", None, 2)
    assert directory.get("c1") is None
    for value in (b"", b"{", b"[]", b'{"kind": "claim"}', b'{"kind": "what"}'):
        assert directory.apply("c1", value, 3) is None
    assert directory.malformed == 5


@given(st.lists(st.tuples(st.sampled_from(["gw-1", "gw-2", "gw-3"]), st.booleans()), max_size=30))
def test_the_latest_claim_always_wins_whatever_the_stale_updates(
    steps: list[tuple[str, bool]],
) -> None:
    """Claims and updates from any holder, in any order: the record is the newest claim's
    holder, and only updates with its epoch change it."""
    directory = Directory()
    epochs: dict[str, int] = {}
    newest: tuple[str, int] | None = None
    for offset, (owner, is_claim) in enumerate(steps):
        if is_claim or owner not in epochs:
            directory.apply("c1", _claim(owner=owner), offset)
            epochs[owner] = offset
            newest = (owner, offset)
        else:
            directory.apply("c1", _state(epochs[owner], owner=owner), offset)
    record = directory.get("c1")
    if newest is None:
        assert record is None
    else:
        assert record is not None
        assert (record.owner, record.epoch) == newest


def test_queued_commands_follow_the_session_to_its_next_holder() -> None:
    directory = Directory()
    directory.apply("c1", _claim(), 1)
    record = directory.get("c1")
    assert record is not None
    away = SessionRecord(
        "c1",
        "dev-1",
        "gw-1",
        1,
        False,
        60,
        9_000,
        {"devices/dev-1/commands": 1},
        {7: Outgoing("devices/dev-1/commands", b'{"x":1}', "cmd-1", None)},
    )
    directory.apply("c1", away.update(), 2)
    assert directory.waiting_for("gw-1", "devices/dev-1/commands") == [away]
    assert directory.waiting_for("gw-2", "devices/dev-1/commands") == []
    directory.apply("c1", _claim(owner="gw-2"), 3)
    claimed = directory.claimed("c1", 3)
    assert claimed is not None
    assert claimed.record.outgoing == away.outgoing


class _Clocks:
    """A wall clock and a monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_000.0, 50.0

    def clock(self) -> LogClock:
        return LogClock(lambda: self.wall, lambda: self.mono)


def test_the_log_clock_follows_the_brokers_stamps_and_not_the_wall_clock() -> None:
    clocks = _Clocks()
    clock = clocks.clock()
    assert clock.now_ms() == 1_000_000  # nothing stamped by a broker yet: the wall clock
    clock.seen(5_000_000, 0)  # a writer's own time (CreateTime) is not taken
    assert not clock.from_log
    clock.seen(2_000_000, LOG_APPEND_TIME)
    assert clock.now_ms() == 2_000_000
    clocks.wall += 3_600  # the host's clock jumps an hour ahead
    clocks.mono += 2.5
    assert clock.now_ms() == 2_002_500  # only the monotonic time that passed counts
    clock.seen(1_900_000, LOG_APPEND_TIME)  # an older stamp (a record read late)
    assert clock.now_ms() == 2_002_500  # never moves it back
    clock.seen(2_010_000, LOG_APPEND_TIME)
    assert clock.now_ms() == 2_010_000


def test_a_claim_stamped_by_the_broker_is_dated_by_the_stamp_not_by_its_writer() -> None:
    """The writer of the claim had its clock an hour ahead (``at_ms``): the broker's stamp,
    a second after the release, decides that the session is resumed."""
    clocks = _Clocks()
    directory = Directory(clocks.clock())
    directory.apply("c1", _claim(), 5, 1_000_000, LOG_APPEND_TIME)
    directory.apply("c1", _state(5, connected=False, disconnected_at_ms=1_001_000), 6)
    ahead = claim(principal="dev-1", owner="gw-2", clean_start=False, expiry_s=60, at_ms=4_601_000)
    directory.apply("c1", ahead, 9, 1_002_000, LOG_APPEND_TIME)
    resumed = directory.claimed("c1", 9)
    assert resumed is not None
    assert resumed.present
    directory.apply("c1", _state(9, connected=False, disconnected_at_ms=1_003_000), 10)
    late = claim(principal="dev-1", owner="gw-1", clean_start=False, expiry_s=60, at_ms=0)
    directory.apply("c1", late, 12, 1_063_000, LOG_APPEND_TIME)  # 60 s after it left
    claimed = directory.claimed("c1", 12)
    assert claimed is not None
    assert not claimed.present
    clocks.mono += 1.0
    assert directory.clock.now_ms() == 1_064_000


def test_on_a_topic_without_broker_stamps_a_claim_keeps_its_writers_time() -> None:
    directory = Directory(_Clocks().clock())
    directory.apply("c1", _claim(), 5, 10_000, 0)
    directory.apply("c1", _state(5, connected=False, disconnected_at_ms=10_000), 6)
    ahead = claim(principal="dev-1", owner="gw-2", clean_start=False, expiry_s=60, at_ms=80_000)
    directory.apply("c1", ahead, 9, 80_000, 0)
    claimed = directory.claimed("c1", 9)
    assert claimed is not None
    assert not claimed.present  # 70 s by its writer's clock: expired
