"""PUBACKs leave in arrival order, each only after its own and all earlier records are done."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from iot_gateway.acks import AckWindow


def test_acks_wait_for_every_earlier_message() -> None:
    sent: list[int] = []
    window = AckWindow(sent.append)
    slots = [window.admit(mid) for mid in (10, 11, 12)]
    window.complete(slots[2])
    window.complete(slots[1])
    assert sent == []
    assert len(window) == 3
    window.complete(slots[0])
    assert sent == [10, 11, 12]
    assert len(window) == 0


def test_a_failed_message_holds_back_everything_after_it() -> None:
    sent: list[int] = []
    window = AckWindow(sent.append)
    slots = [window.admit(mid) for mid in range(1, 6)]
    window.complete(slots[0])
    for slot in slots[2:]:  # message 2 never completes (its produce failed)
        window.complete(slot)
    assert sent == [1]


@given(st.permutations(list(range(30))))
def test_any_completion_order_acks_each_mid_once_in_arrival_order(order: list[int]) -> None:
    sent: list[int] = []
    window = AckWindow(sent.append)
    slots = [window.admit(mid) for mid in range(30)]
    for index in order:
        window.complete(slots[index])
        assert sent == list(range(len(sent)))  # always a prefix of arrival order
    assert sent == list(range(30))
