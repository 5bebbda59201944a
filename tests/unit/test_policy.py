"""Policy tables: transitions, room plans for every access and room version, notices."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from policy.notices import Milestone, transaction_notice
from policy.rooms import (
    STATE_EVENT_TYPES,
    Participants,
    RoomKind,
    alias_localpart,
    departs_from_plan,
    plan_room,
)
from policy.states import (
    Access,
    DisputeState,
    InvalidTransition,
    Outcome,
    TransactionState,
    decide_close,
    decide_open_dispute,
    decide_payment,
    decide_resolve,
    dispute_access,
    transaction_access,
)

AWAITING, PAID, CLOSED = TransactionState
BOT, BUYER, SELLER, ADMIN = "@bot:hs", "@buyer:hs", "@seller:hs", "@admin:hs"
PEOPLE = Participants(bot=BOT, parties=(BUYER, SELLER), admins=(ADMIN,))


@pytest.mark.parametrize(
    ("state", "outcome", "expected"),
    [
        (AWAITING, None, (PAID, None, True)),
        (PAID, None, (PAID, None, False)),
        (CLOSED, Outcome.CANCELLED, InvalidTransition),
    ],
)
def test_payment(state, outcome, expected) -> None:
    if expected is InvalidTransition:
        with pytest.raises(InvalidTransition, match="closed"):
            decide_payment(state, outcome)
        return
    t = decide_payment(state, outcome)
    assert (t.state, t.outcome, t.changed) == expected


@pytest.mark.parametrize(
    ("state", "current", "requested", "expected"),
    [
        (AWAITING, None, Outcome.CANCELLED, (CLOSED, Outcome.CANCELLED, True)),
        (PAID, None, Outcome.COMPLETED, (CLOSED, Outcome.COMPLETED, True)),
        (PAID, None, Outcome.REFUNDED, (CLOSED, Outcome.REFUNDED, True)),
        (CLOSED, Outcome.COMPLETED, Outcome.COMPLETED, (CLOSED, Outcome.COMPLETED, False)),
        (CLOSED, Outcome.COMPLETED, Outcome.REFUNDED, InvalidTransition),
    ],
)
def test_close(state, current, requested, expected) -> None:
    if expected is InvalidTransition:
        with pytest.raises(InvalidTransition, match="already closed as completed"):
            decide_close(state, current, requested)
        return
    t = decide_close(state, current, requested)
    assert (t.state, t.outcome, t.changed) == expected


@pytest.mark.parametrize(
    ("state", "access"),
    [(AWAITING, Access.LOCKED), (PAID, Access.OPEN), (CLOSED, Access.ARCHIVED)],
)
def test_transaction_access(state, access) -> None:
    assert transaction_access(state) is access


@pytest.mark.parametrize("version", ["11", "12"])
@pytest.mark.parametrize(
    ("access", "events_default", "party_posts", "admin_posts"),
    [
        (Access.LOCKED, 50, False, True),
        (Access.OPEN, 0, True, True),
        (Access.FROZEN, 50, False, True),
        (Access.ARCHIVED, 100, False, False),
    ],
)
def test_power_levels_for_every_access_and_version(
    version, access, events_default, party_posts, admin_posts
) -> None:
    levels = plan_room(RoomKind.TRANSACTION, access, PEOPLE, version, "A bike").power_levels
    assert levels["events_default"] == events_default
    users = levels["users"]
    party_level = users.get(BUYER, levels["users_default"])
    assert (party_level >= levels["events_default"]) is party_posts
    assert (users[ADMIN] >= levels["events_default"]) is admin_posts
    assert users[ADMIN] == 50 and levels["users_default"] == 0
    assert BUYER not in users and SELLER not in users
    if version == "12":
        assert BOT not in users  # the creator has unlimited power and must not be listed
    else:
        assert users[BOT] == 100
    assert levels["state_default"] == 100
    assert (levels["invite"], levels["kick"], levels["ban"], levels["redact"]) == (
        100,
        100,
        100,
        50,
    )
    assert levels["events"] == {**dict.fromkeys(STATE_EVENT_TYPES, 100), "m.room.redaction": 50}
    assert "m.room.encryption" in levels["events"]


@pytest.mark.parametrize("access", list(Access))
def test_every_plan_is_invite_only_without_guests(access) -> None:
    plan = plan_room(RoomKind.TRANSACTION, access, PEOPLE, "12", "A bike")
    assert (plan.join_rule, plan.guest_access, plan.history_visibility) == (
        "invite",
        "forbidden",
        "shared",
    )
    assert {e["type"]: e["content"] for e in plan.initial_state()} == {
        "m.room.join_rules": {"join_rule": "invite"},
        "m.room.guest_access": {"guest_access": "forbidden"},
        "m.room.history_visibility": {"history_visibility": "shared"},
    }


@pytest.mark.parametrize(
    ("access", "name", "topic"),
    [
        (
            Access.LOCKED,
            "A <b>bike</b> · awaiting payment",
            "Awaiting payment: the chat opens once the marketplace confirms payment.",
        ),
        (
            Access.OPEN,
            "A <b>bike</b> · open",
            "Open: payment confirmed, buyer and seller can talk here.",
        ),
        (
            Access.FROZEN,
            "A <b>bike</b> · frozen (dispute open)",
            "Frozen while a dispute is open: only the marketplace's moderators can post.",
        ),
        (
            Access.ARCHIVED,
            "A <b>bike</b> · closed",
            "Closed: the deal is over; this chat stays as a read-only archive.",
        ),
    ],
)
def test_transaction_room_name_topic_and_invitees(access, name, topic) -> None:
    plan = plan_room(RoomKind.TRANSACTION, access, PEOPLE, "12", "A <b>bike</b>")
    assert (plan.name, plan.topic) == (name, topic)  # a name is plain text: nothing escaped
    assert plan.invitees == (BUYER, SELLER)  # admins are not invited to transaction rooms


def test_dispute_rooms_invite_admins() -> None:
    plan = plan_room(RoomKind.DISPUTE, Access.OPEN, PEOPLE, "12", "A bike")
    assert plan.name == "Dispute: A bike · open"
    assert plan.invitees == (BUYER, SELLER, ADMIN)


@pytest.mark.parametrize(
    ("current", "planned", "departs"),
    [
        (None, {"a": 1}, True),
        ({"a": 1}, {"a": 1}, False),
        ({"a": 1, "extra": 2}, {"a": 1}, False),
        ({"a": 2}, {"a": 1}, True),
        ({"users": {"@x:hs": 100}}, {"users": {}}, True),
        ({"topic": "t", "m.topic": [{"body": "t"}]}, {"topic": "t"}, False),
    ],
)
def test_departs_from_plan(current, planned, departs) -> None:
    assert departs_from_plan(current, planned) is departs


@pytest.mark.parametrize(
    ("object_id", "localpart"),
    [
        ("abc-1.2", "market_transaction_abc-1.2"),
        ("Order_7:X", "market_transaction__order__7=3a_x"),
    ],
)
def test_alias_localpart(object_id, localpart) -> None:
    assert alias_localpart("market_", RoomKind.TRANSACTION, object_id) == localpart


ids = st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True)


@given(ids, ids)
def test_alias_localparts_are_distinct_and_lower_case(a: str, b: str) -> None:
    la = alias_localpart("market_", RoomKind.TRANSACTION, a)
    lb = alias_localpart("market_", RoomKind.TRANSACTION, b)
    assert (la == lb) is (a == b)
    assert la == la.lower() and ":" not in la


def test_notices_escape_the_title() -> None:
    title = '<script>alert("x")</script> & co'
    created = transaction_notice(Milestone.CREATED, title, None)
    assert title in created.body
    assert "<script>" not in created.html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co" in created.html
    content = created.content()
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"


@pytest.mark.parametrize(
    ("milestone", "outcome", "words"),
    [
        (Milestone.CREATED, None, "opens once the marketplace confirms payment"),
        (Milestone.PAID, None, "the chat is open"),
        (
            Milestone.CLOSED,
            Outcome.REFUNDED,
            "is refunded: the deal is closed, and this chat is now a read-only archive",
        ),
    ],
)
def test_notice_texts(milestone, outcome, words) -> None:
    assert words in transaction_notice(milestone, "Bike", outcome).body


@pytest.mark.parametrize(
    ("state", "open_dispute", "allowed"),
    [
        (AWAITING, None, False),
        (PAID, None, True),
        (PAID, "d-1", False),
        (CLOSED, None, False),
    ],
)
def test_opening_a_dispute(state, open_dispute, allowed) -> None:
    if allowed:
        decide_open_dispute(state, open_dispute)
    else:
        with pytest.raises(InvalidTransition):
            decide_open_dispute(state, open_dispute)


@pytest.mark.parametrize(
    ("state", "current", "decision", "expected"),
    [
        (DisputeState.OPEN, None, "refund_buyer", True),
        (DisputeState.RESOLVED, "refund_buyer", "refund_buyer", False),
        (DisputeState.RESOLVED, "refund_buyer", "no_action", InvalidTransition),
    ],
)
def test_resolving_a_dispute(state, current, decision, expected) -> None:
    if expected is InvalidTransition:
        with pytest.raises(InvalidTransition, match="already resolved as refund_buyer"):
            decide_resolve(state, current, decision)
    else:
        assert decide_resolve(state, current, decision) is expected


def test_no_payment_or_close_while_a_dispute_is_open() -> None:
    with pytest.raises(InvalidTransition, match="dispute is open"):
        decide_payment(PAID, None, dispute_open=True)
    with pytest.raises(InvalidTransition, match="dispute is open"):
        decide_close(PAID, None, Outcome.REFUNDED, dispute_open=True)


@pytest.mark.parametrize(
    ("state", "dispute_open", "freeze", "access"),
    [
        (PAID, True, True, Access.FROZEN),
        (PAID, True, False, Access.OPEN),
        (PAID, False, True, Access.OPEN),
        (CLOSED, True, True, Access.ARCHIVED),
    ],
)
def test_a_dispute_freezes_the_transaction_room(state, dispute_open, freeze, access) -> None:
    assert transaction_access(state, dispute_open, freeze) is access


@pytest.mark.parametrize(
    ("state", "access"),
    [(DisputeState.OPEN, Access.OPEN), (DisputeState.RESOLVED, Access.ARCHIVED)],
)
def test_dispute_room_access(state, access) -> None:
    assert dispute_access(state) is access
