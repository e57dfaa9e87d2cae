"""The edge's session table: takeover, ownership, clean start, expiry, packet ids."""

from __future__ import annotations

from iot_gateway.edge.sessions import Outgoing, SessionTable


class Holder:
    def __init__(self) -> None:
        self.taken_over = False

    def take_over(self) -> None:
        self.taken_over = True


def test_a_newer_connection_takes_over_and_resumes_the_session() -> None:
    table, old, new = SessionTable(), Holder(), Holder()
    opened = table.open("c1", "dev-1", clean_start=False, expiry_s=60, holder=old)
    assert opened is not None
    session, present = opened
    session.subscriptions["devices/dev-1/commands"] = 1
    assert not present
    again = table.open("c1", "dev-1", clean_start=False, expiry_s=60, holder=new)
    assert again is not None
    assert again == (session, True)
    assert old.taken_over
    assert session.holder is new
    table.release(session, old, now=0.0)  # the old connection's late goodbye changes nothing
    assert session.holder is new


def test_another_principal_may_not_take_a_session() -> None:
    table = SessionTable()
    assert table.open("c1", "dev-1", clean_start=True, expiry_s=0, holder=Holder()) is not None
    intruder = Holder()
    assert table.open("c1", "dev-2", clean_start=True, expiry_s=0, holder=intruder) is None
    assert not intruder.taken_over


def test_clean_start_discards_the_old_state() -> None:
    table, holder = SessionTable(), Holder()
    opened = table.open("c1", "dev-1", clean_start=False, expiry_s=60, holder=holder)
    assert opened is not None
    opened[0].awaiting_release.add(7)
    table.release(opened[0], holder, now=0.0)
    fresh = table.open("c1", "dev-1", clean_start=True, expiry_s=60, holder=Holder())
    assert fresh is not None
    assert fresh[1] is False
    assert fresh[0].awaiting_release == set()


def test_sessions_end_with_their_connection_or_after_their_expiry() -> None:
    table = SessionTable()
    for client_id, expiry in (("brief", 0), ("kept", 30)):
        holder = Holder()
        opened = table.open(client_id, "dev-1", clean_start=False, expiry_s=expiry, holder=holder)
        assert opened is not None
        table.release(opened[0], holder, now=100.0)
    assert table.get("brief") is None
    assert table.get("kept") is not None
    assert table.expire(now=129.0) == 0
    assert table.expire(now=130.0) == 1
    assert table.get("kept") is None


def test_packet_ids_skip_those_in_use_and_run_out() -> None:
    table, holder = SessionTable(), Holder()
    opened = table.open("c1", "dev-1", clean_start=True, expiry_s=0, holder=holder)
    assert opened is not None
    session = opened[0]
    session.outgoing[1] = Outgoing("t", b"", "cmd-1")
    assert session.next_packet_id() == 2
    for packet_id in range(1, 65_536):
        session.outgoing[packet_id] = Outgoing("t", b"", str(packet_id))
    assert session.next_packet_id() is None


def test_subscribers_are_found_by_filter() -> None:
    table = SessionTable()
    opened = table.open("c1", "dev-1", clean_start=True, expiry_s=0, holder=Holder())
    assert opened is not None
    opened[0].subscriptions["devices/dev-1/#"] = 1
    assert table.subscribers("devices/dev-1/commands") == [opened[0]]
    assert table.subscribers("devices/dev-2/commands") == []
