"""The fold of the sessions topic: claims give epochs, stale holders are fenced."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from iot_gateway.edge.directory import Directory, SessionRecord, Takeover, claim
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
