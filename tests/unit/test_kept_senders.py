"""What the inbox worker keeps of each sender (bridge.homeserver.arrivals.KeptSenders):
taken at most once, and bounded, the least lately kept let go first."""

from __future__ import annotations

from bridge.homeserver.arrivals import Kept, KeptSenders
from bridge.policybot.history import KeptHistory
from policy.ids import RoomId, UserId


def kept(n: int) -> Kept:
    history = KeptHistory(n, 0, ((n, n, "hi"),), None, 10_000)
    return Kept(owner=None, owner_print=f"print {n}", history=history)  # type: ignore[arg-type]


def test_a_sender_kept_is_taken_once() -> None:
    senders = KeptSenders()
    senders.keep(RoomId("!a"), UserId("@b:x"), kept(1))
    assert senders.take(RoomId("!a"), UserId("@s:x")) is None  # another sender
    assert senders.take(RoomId("!a"), UserId("@b:x")) == kept(1)
    assert senders.take(RoomId("!a"), UserId("@b:x")) is None


def test_the_least_lately_kept_is_let_go_first() -> None:
    senders = KeptSenders(limit=2)
    for n, room in enumerate(("!a", "!b", "!a", "!c")):  # !a kept again after !b
        senders.keep(RoomId(room), UserId("@b:x"), kept(n))
    assert senders.take(RoomId("!b"), UserId("@b:x")) is None
    assert senders.take(RoomId("!a"), UserId("@b:x")) == kept(2)
    assert senders.take(RoomId("!c"), UserId("@b:x")) == kept(3)
