"""What a buyer or seller reads in a Matrix client (Element): each room's first notice says why
the chat is not end-to-end encrypted, and each room's name and topic say its deal's state in
words, one distinct wording per state."""

from __future__ import annotations

import pytest

from policy.ids import TransactionId
from policy.notices import Milestone, dispute_opened_notice, transaction_notice
from policy.rooms import Participants, RoomKind, plan_room
from policy.states import Access, DisputeState, Outcome, dispute_access

BOT, BUYER, SELLER, ADMIN = "@bot:hs", "@buyer:hs", "@seller:hs", "@admin:hs"
PEOPLE = Participants(bot=BOT, parties=(BUYER, SELLER), admins=(ADMIN,))
TITLE = "Vintage bike"


def plan(kind: RoomKind, access: Access, by_admins: bool = False):
    return plan_room(kind, access, PEOPLE, "12", TITLE, by_admins=by_admins)


def says_why_not_encrypted(text: str) -> bool:
    return all(
        words in text
        for words in (
            "not end-to-end encrypted",  # Element's banner: "End-to-end encryption isn't enabled"
            "moderators can read",
            "protect",
            "dispute",
            "whole conversation at hand",
        )
    )


OPENING_NOTICES = {
    "transaction": transaction_notice(Milestone.CREATED, TITLE, None),
    "dispute": dispute_opened_notice(TITLE, TransactionId("order-1"), "Not as described", "buyer"),
}


@pytest.mark.parametrize("room", list(OPENING_NOTICES))
def test_each_rooms_first_notice_says_why_it_is_not_end_to_end_encrypted(room) -> None:
    notice = OPENING_NOTICES[room]
    assert says_why_not_encrypted(notice.body)
    assert says_why_not_encrypted(notice.html)


def test_the_opening_notice_says_the_chat_waits_for_payment() -> None:
    body = OPENING_NOTICES["transaction"].body
    assert body.startswith(
        "This is the chat for “Vintage bike”. It opens once the marketplace confirms payment. "
    )


def test_only_the_first_notice_explains_the_encryption() -> None:
    later = [
        transaction_notice(Milestone.PAID, TITLE, None),
        transaction_notice(Milestone.CLOSED, TITLE, Outcome.COMPLETED),
    ]
    assert not any("encrypted" in notice.body for notice in later)


def test_the_encryption_sentence_keeps_values_escaped() -> None:
    title, reason = "<i>bike</i> & co", "<script>x</script>"
    created = transaction_notice(Milestone.CREATED, title, None)
    opened = dispute_opened_notice(title, TransactionId("o<1>"), reason, "buyer")
    for notice in (created, opened):
        assert "<i>" not in notice.html and "<script>" not in notice.html
        assert "&lt;i&gt;bike&lt;/i&gt; &amp; co" in notice.html
        assert title in notice.body
    assert "o&lt;1&gt;" in opened.html


def test_each_transaction_state_has_its_own_name_and_topic() -> None:
    plans = {access: plan(RoomKind.TRANSACTION, access) for access in Access}
    assert {access: p.name for access, p in plans.items()} == {
        Access.LOCKED: "Vintage bike · awaiting payment",
        Access.OPEN: "Vintage bike · open",
        Access.FROZEN: "Vintage bike · frozen (dispute open)",
        Access.ARCHIVED: "Vintage bike · closed",
    }
    assert len({p.topic for p in plans.values()}) == len(Access)


def test_waiting_for_payment_and_closed_read_differently() -> None:
    locked = plan(RoomKind.TRANSACTION, Access.LOCKED)
    archived = plan(RoomKind.TRANSACTION, Access.ARCHIVED)
    assert locked.topic.startswith("Awaiting payment:") and "payment" in locked.name
    assert archived.topic.startswith("Closed:") and archived.name.endswith("closed")
    assert "archive" not in locked.topic and "payment" not in archived.topic


def test_each_topic_starts_with_the_state_its_name_gives() -> None:
    for access in (Access.LOCKED, Access.OPEN, Access.ARCHIVED):
        room = plan(RoomKind.TRANSACTION, access)
        status = room.name.removeprefix(f"{TITLE} · ")
        assert room.topic.lower().startswith(status), (access, room.topic)
    assert plan(RoomKind.TRANSACTION, Access.FROZEN).topic.startswith("Frozen")


def test_an_admins_lock_of_a_paid_room_does_not_read_awaiting_payment() -> None:
    locked = plan(RoomKind.TRANSACTION, Access.LOCKED, by_admins=True)
    assert locked.name == "Vintage bike · locked by moderators"
    assert "payment" not in locked.topic and "moderators" in locked.topic
    opened = plan(RoomKind.TRANSACTION, Access.OPEN, by_admins=True)
    assert opened.name == "Vintage bike · open"
    assert "Payment confirmed" not in opened.topic  # unlocked before payment, say
    # The access is the same as the state's: only the words differ.
    for access in (Access.LOCKED, Access.OPEN):
        ours = plan(RoomKind.TRANSACTION, access, by_admins=True)
        assert ours.power_levels == plan(RoomKind.TRANSACTION, access).power_levels


def test_each_dispute_state_has_its_own_name_and_topic() -> None:
    names = {state: plan(RoomKind.DISPUTE, dispute_access(state)).name for state in DisputeState}
    assert names == {
        DisputeState.OPEN: "Dispute: Vintage bike · open",
        DisputeState.RESOLVED: "Dispute: Vintage bike · resolved",
    }
    plans = [plan(RoomKind.DISPUTE, access) for access in Access]
    assert len({p.name for p in plans}) == len({p.topic for p in plans}) == len(Access)
    assert plan(RoomKind.DISPUTE, Access.ARCHIVED).topic.startswith("Dispute resolved:")


def test_the_moderation_rooms_name_is_left_as_given() -> None:
    assert plan(RoomKind.MANAGEMENT, Access.OPEN).name == TITLE
