"""Policy tables for the policy bot: content rules, membership and state decisions, mutes."""

from __future__ import annotations

import pytest

from policy.membership import (
    allowed_members,
    needs_state_check,
    removes_on_arrival,
    strays,
)
from policy.notices import warning_notice
from policy.rooms import MUTED_LEVEL, Participants, RoomKind, plan_room
from policy.rules import (
    Action,
    ContentRules,
    Rule,
    RuleSetting,
    judge_event,
    judge_message,
    media_type_allowed,
)
from policy.states import Access

BOT, BUYER, SELLER, ADMIN, OUTSIDER = "@bot:hs", "@buyer:hs", "@seller:hs", "@admin:hs", "@x:hs"
PEOPLE = Participants(bot=BOT, parties=(BUYER, SELLER), admins=(ADMIN,))
POSTING = frozenset({Access.LOCKED, Access.OPEN, Access.FROZEN})


def rules(**changes: object) -> ContentRules:
    settings = {
        Rule.MSGTYPE: RuleSetting(frozenset({Action.REDACT, Action.WARN}), POSTING),
        Rule.MEDIA_TYPE: RuleSetting(frozenset({Action.REDACT, Action.WARN}), POSTING),
        Rule.MEDIA_SIZE: RuleSetting(frozenset({Action.REDACT}), POSTING),
        Rule.CONTACT_DETAILS: RuleSetting(
            frozenset({Action.REDACT, Action.WARN, Action.ALERT}), POSTING
        ),
        Rule.FLOOD: RuleSetting(frozenset({Action.MUTE, Action.WARN}), frozenset({Access.OPEN})),
    }
    values = {
        "allowed_msgtypes": frozenset({"m.text", "m.emote", "m.notice", "m.image", "m.file"}),
        "allowed_media_types": ("image/jpeg", "image/png", "application/pdf"),
        "max_media_bytes": 10 * 1024 * 1024,
        "allowed_link_hosts": ("marketplace.example",),
        "off_platform_terms": ("whatsapp", "paypal"),
        "flood_messages": 5,
        "flood_window_ms": 10_000,
        "settings": settings,
    }
    return ContentRules(**{**values, **changes})


def judge(content: object, access: Access = Access.OPEN, **options: object):
    values = {"transaction_closed": False, "recent_messages": 1, "muted": False, **options}
    return judge_message(content, rules(), access, **values)


def text(body: str) -> dict:
    return {"msgtype": "m.text", "body": body}


def media(msgtype: str, mimetype: object, size: object = 1000) -> dict:
    return {
        "msgtype": msgtype,
        "body": "file",
        "url": "mxc://hs/x",
        "info": {"mimetype": mimetype, "size": size},
    }


@pytest.mark.parametrize(
    ("content", "broken"),
    [
        (text("Is the bike still available?"), []),
        ({"msgtype": "m.emote", "body": "waves"}, []),
        ({"msgtype": "m.location", "body": "here", "geo_uri": "geo:1,2"}, [Rule.MSGTYPE]),
        (
            {"msgtype": "m.video", "body": "clip", "info": {"mimetype": "video/mp4"}},
            [Rule.MSGTYPE, Rule.MEDIA_TYPE],
        ),
        ({"body": "no msgtype"}, [Rule.MSGTYPE]),
        ("not an object", [Rule.MSGTYPE]),
        (media("m.image", "image/png"), []),
        (media("m.image", "IMAGE/PNG; charset=binary"), []),
        (media("m.file", "application/pdf"), []),
        (media("m.file", "application/x-msdownload"), [Rule.MEDIA_TYPE]),
        (media("m.image", "image/svg+xml"), [Rule.MEDIA_TYPE]),
        (media("m.file", None), [Rule.MEDIA_TYPE]),
        (media("m.file", ""), [Rule.MEDIA_TYPE]),
        (media("m.image", "image/png", 10 * 1024 * 1024), []),
        (media("m.image", "image/png", 10 * 1024 * 1024 + 1), [Rule.MEDIA_SIZE]),
        (media("m.image", "image/png", "huge"), []),  # undeclared: the homeserver's limit
        (media("m.file", "application/zip", 50_000_000), [Rule.MEDIA_TYPE, Rule.MEDIA_SIZE]),
        (text("call me on +44 7911 123456"), [Rule.CONTACT_DETAILS]),
        (text("write to bob at gmail dot com"), [Rule.CONTACT_DETAILS]),
        (text("pay me on p a y p a l"), [Rule.CONTACT_DETAILS]),
        (text("see https://marketplace.example/item/1"), []),
        (text("see https://elsewhere.example/item/1"), [Rule.CONTACT_DETAILS]),
        (
            {**media("m.file", "application/pdf"), "filename": "call 07911123456.pdf"},
            [Rule.CONTACT_DETAILS],
        ),
        # A harmless message edited into a phone number is judged by what it becomes.
        (
            {
                "msgtype": "m.text",
                "body": "* ok",
                "m.new_content": text("07911 123456"),
                "m.relates_to": {"rel_type": "m.replace", "event_id": "$1"},
            },
            [Rule.CONTACT_DETAILS],
        ),
        # A link hidden behind innocent text in HTML.
        (
            {
                **text("our shop"),
                "format": "org.matrix.custom.html",
                "formatted_body": '<a href="https://evil.example/x">our shop</a>',
            },
            [Rule.CONTACT_DETAILS],
        ),
        # Mention pills link to matrix.to; a reply quotes another message.
        (
            {
                **text("thanks Bob"),
                "format": "org.matrix.custom.html",
                "formatted_body": '<a href="https://matrix.to/#/@seller:hs">Bob</a> thanks',
            },
            [],
        ),
        (
            {
                "msgtype": "m.text",
                "body": "> <@seller:hs> see elsewhere.example\n\nno thanks",
                "m.relates_to": {"m.in_reply_to": {"event_id": "$2"}},
            },
            [],
        ),
    ],
)
def test_content_rules(content: object, broken: list[Rule]) -> None:
    assert [v.rule for v in judge(content).violations] == broken


def test_contact_details_name_their_kinds_but_not_the_content() -> None:
    (violation,) = judge(text("mail bob@example.org or call +44 7911 123456")).violations
    assert set(violation.findings) == {"email", "phone"}
    assert "bob" not in violation.reason and "7911" not in violation.reason


@pytest.mark.parametrize(
    ("access", "closed", "recent", "muted", "broken"),
    [
        (Access.OPEN, False, 5, False, []),
        (Access.OPEN, False, 6, False, [Rule.FLOOD]),
        (Access.OPEN, False, 6, True, []),  # in flight while the mute was being applied
        (Access.FROZEN, False, 6, False, []),  # the flood rule applies in open rooms only
        (Access.OPEN, True, 1, False, []),  # contact details are fine once the deal is closed
    ],
)
def test_flood_and_closed_transactions(
    access: Access, closed: bool, recent: int, muted: bool, broken: list[Rule]
) -> None:
    content = text("call +44 7911 123456") if closed else text("hi")
    verdict = judge(
        content, access, transaction_closed=closed, recent_messages=recent, muted=muted
    )
    assert [v.rule for v in verdict.violations] == broken


def test_actions_are_the_union_of_the_broken_rules_actions() -> None:
    verdict = judge(text("paypal me"), recent_messages=6)
    assert [v.rule for v in verdict.violations] == [Rule.CONTACT_DETAILS, Rule.FLOOD]
    assert verdict.actions == {Action.REDACT, Action.WARN, Action.ALERT, Action.MUTE}
    assert not judge(text("hello")).actions


def test_a_rule_with_no_access_states_is_off() -> None:
    off = rules(settings={Rule.MSGTYPE: RuleSetting(frozenset({Action.REDACT}), frozenset())})
    verdict = judge_message(
        {"msgtype": "m.location"},
        off,
        Access.OPEN,
        transaction_closed=False,
        recent_messages=1,
        muted=False,
    )
    assert not verdict.broken


@pytest.mark.parametrize(
    ("media_type", "allowed", "expected"),
    [
        ("image/png", ("image/*",), True),
        ("image/png", ("image/jpeg",), False),
        ("Image/PNG ; q=1", ("image/png",), True),
        ("application/pdf", ("image/*",), False),
        ("imagex/png", ("image/*",), False),
    ],
)
def test_media_type_allowed(media_type: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert media_type_allowed(media_type, allowed) is expected


@pytest.mark.parametrize(
    ("kind", "user", "membership", "removed"),
    [
        (RoomKind.TRANSACTION, OUTSIDER, "join", True),
        (RoomKind.TRANSACTION, OUTSIDER, "knock", True),
        (RoomKind.TRANSACTION, OUTSIDER, "invite", False),  # revoked by the scheduled repair
        (RoomKind.TRANSACTION, OUTSIDER, "leave", False),
        (RoomKind.TRANSACTION, BUYER, "join", False),
        (RoomKind.TRANSACTION, ADMIN, "join", False),
        (RoomKind.TRANSACTION, BOT, "join", False),
        (RoomKind.DISPUTE, SELLER, "join", False),
        (RoomKind.DISPUTE, OUTSIDER, "join", True),
        (RoomKind.MANAGEMENT, ADMIN, "join", False),
        (RoomKind.MANAGEMENT, BUYER, "join", True),  # parties have no place among the admins
    ],
)
def test_who_is_removed_on_arrival(
    kind: RoomKind, user: str, membership: str, removed: bool
) -> None:
    assert removes_on_arrival(membership, user, allowed_members(kind, PEOPLE)) is removed


def test_strays_are_everyone_present_and_not_allowed() -> None:
    memberships = {
        BOT: "join",
        BUYER: "join",
        SELLER: "invite",
        ADMIN: "leave",
        OUTSIDER: "invite",
        "@y:hs": "join",
        "@z:hs": "knock",
        "@gone:hs": "leave",
        "@banned:hs": "ban",
    }
    allowed = allowed_members(RoomKind.TRANSACTION, PEOPLE)
    assert strays(memberships, allowed) == [OUTSIDER, "@y:hs", "@z:hs"]


@pytest.mark.parametrize(
    ("event_type", "state_key", "sender", "checked"),
    [
        ("m.room.power_levels", "", BUYER, True),
        ("m.room.topic", "", ADMIN, True),
        ("m.room.join_rules", "", OUTSIDER, True),
        ("m.room.power_levels", "", BOT, False),  # the bot's own changes follow the plan
        ("m.room.member", BUYER, BUYER, False),  # membership has its own decision
        ("m.room.name", "x", BUYER, False),
        ("org.example.custom", "", BUYER, False),
    ],
)
def test_which_state_changes_are_checked(
    event_type: str, state_key: str, sender: str, checked: bool
) -> None:
    assert needs_state_check(event_type, state_key, sender, BOT) is checked


@pytest.mark.parametrize("access", list(Access))
def test_a_muted_party_is_below_every_events_default_and_admins_are_never_muted(
    access: Access,
) -> None:
    plan = plan_room(RoomKind.TRANSACTION, access, PEOPLE, "12", "A bike", (BUYER, ADMIN))
    levels = plan.power_levels
    assert levels["users"][BUYER] == MUTED_LEVEL < levels["events_default"]
    assert levels["users"][ADMIN] == 50
    assert SELLER not in levels["users"]


def test_the_warning_escapes_and_names_what_happened() -> None:
    notice = warning_notice("@<b>x</b>:hs", ["files of type <script> are not allowed"], True, 600)
    assert "your message was removed" in notice.body and "muted for 10 min" in notice.body
    assert "<script>" not in notice.html and "<b>x</b>" not in notice.html
    assert "&lt;script&gt;" in notice.html


@pytest.mark.parametrize(
    ("event_type", "content", "broken"),
    [
        ("m.room.message", text("hello"), []),
        ("m.room.message", text("+44 7911 123456"), [Rule.CONTACT_DETAILS]),
        ("m.reaction", {"m.relates_to": {"rel_type": "m.annotation", "key": "👍"}}, []),
        # A reaction's key is free text: it can carry a phone number too.
        ("m.reaction", {"m.relates_to": {"key": "07911 123456"}}, [Rule.CONTACT_DETAILS]),
        ("m.reaction", "not an object", []),
        ("m.room.redaction", {"redacts": "$x"}, []),
        ("m.sticker", {"body": "cat", "url": "mxc://hs/x"}, [Rule.MSGTYPE]),
        ("org.matrix.msc3381.poll.start", {}, [Rule.MSGTYPE]),
        ("m.room.encrypted", {"algorithm": "m.megolm.v1.aes-sha2"}, [Rule.MSGTYPE]),
        ("m.call.invite", {}, [Rule.MSGTYPE]),
    ],
)
def test_every_kind_of_event_is_judged(event_type: str, content: object, broken: list) -> None:
    verdict = judge_event(
        event_type,
        content,
        rules(),
        Access.OPEN,
        transaction_closed=False,
        recent_messages=1,
        muted=False,
    )
    assert [v.rule for v in verdict.violations] == broken
    assert bool(verdict.actions) is bool(broken)
