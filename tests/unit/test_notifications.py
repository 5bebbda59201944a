"""Notification policy tables: what each room event means for the marketplace."""

from __future__ import annotations

import pytest

from policy.notifications import (
    Participant,
    RoomContext,
    message_notifications,
    notification_id,
    preview,
    read_notification,
)

BUYER = Participant("u-1", "@buyer:hs", "buyer")
SELLER = Participant("u-2", "@seller:hs", "seller")
ADMIN = Participant(None, "@admin:hs", "admin")
ROOM = RoomContext("!r", "transaction", "t-1", (BUYER, SELLER, ADMIN), bot="@bot:hs")


def event(sender: str = "@buyer:hs", **content: object) -> dict:
    return {
        "event_id": "$e",
        "room_id": "!r",
        "type": "m.room.message",
        "sender": sender,
        "origin_server_ts": 1_700_000_000_000,
        "content": {"msgtype": "m.text", "body": "hi", **content},
    }


@pytest.mark.parametrize(
    ("text", "is_reply", "expected"),
    [
        ("hello\nworld", False, "hello world"),
        ("> <@a:hs> original\n> more\n\nmy answer", True, "my answer"),
        ("> quoted but not a reply", False, "> quoted but not a reply"),
        ("bell\x07 and\x00 nul", False, "bell and nul"),
        ("x" * 300, False, "x" * 199 + "…"),
        (None, False, ""),
    ],
)
def test_preview(text, is_reply, expected) -> None:
    assert preview(text, is_reply=is_reply) == expected
    assert len(preview(text, is_reply=is_reply)) <= 200


def test_a_message_names_sender_and_recipients() -> None:
    (created,), record = message_notifications(event(), ROOM)
    assert created.type == "message.created"
    assert created.data["sender"] == {"user_id": "u-1", "matrix_id": "@buyer:hs", "role": "buyer"}
    assert [r["role"] for r in created.data["recipients"]] == ["seller", "admin"]
    assert record.preview == "hi"
    assert created.body()["occurred_at"] == "2023-11-14T22:13:20.000Z"


@pytest.mark.parametrize(
    "content",
    [
        {"msgtype": "m.image", "body": "a.png", "info": {"mimetype": "image/png", "size": 5}},
        {"msgtype": "m.file", "body": "doc", "filename": "a.pdf", "info": {"size": 1}},
        {"msgtype": "m.video", "body": "v.mp4", "info": "not a dict"},
    ],
)
def test_media_metadata_is_what_the_client_declared(content) -> None:
    (created,), _ = message_notifications(event(**content), ROOM)
    info = content["info"] if isinstance(content["info"], dict) else {}
    assert created.data["media"] == {
        "mimetype": info.get("mimetype"),
        "size": info.get("size"),
        "name": content.get("filename", content["body"]),
    }


@pytest.mark.parametrize(
    ("raw", "related_sender"),
    [
        ({**event(sender="@bot:hs")}, None),  # the bot's own notice
        ({**event(), "type": "m.reaction"}, None),
        ({**event(), "type": "m.room.topic", "state_key": ""}, None),
        ({**event(), "state_key": ""}, None),  # a message type sent as state
        (event(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}), "@seller:hs"),
        # An edit of an event this room never had (another room's): nothing.
        (event(**{"m.relates_to": {"rel_type": "m.replace", "event_id": "$o"}}), None),
        ({**event(), "type": "m.room.redaction", "content": {"redacts": "$o"}}, "@bot:hs"),
        ({**event(), "type": "m.room.redaction", "content": {"redacts": "$o"}}, None),
    ],
)
def test_events_that_notify_nothing(raw, related_sender) -> None:
    assert message_notifications(raw, ROOM, related_sender) == ([], None)


def test_an_edit_and_a_deletion() -> None:
    edit = event(
        **{
            "m.relates_to": {"rel_type": "m.replace", "event_id": "$o"},
            "m.new_content": {"msgtype": "m.text", "body": "fixed"},
        }
    )
    (edited,), record = message_notifications(edit, ROOM, "@buyer:hs")
    assert (edited.type, edited.data["original_event_id"], edited.data["preview"]) == (
        "message.edited",
        "$o",
        "fixed",
    )
    assert record.edits == "$o"
    redaction = {
        **event(sender="@bot:hs"),
        "type": "m.room.redaction",
        "content": {"redacts": "$o"},
    }
    (deleted,), record = message_notifications(redaction, ROOM, "@seller:hs")
    assert (deleted.type, deleted.data["event_id"]) == ("message.deleted", "$o")
    assert deleted.data["deleted_by"]["role"] == "bot"
    assert record.deletes == "$o"


def test_ids_are_stable_and_distinct() -> None:
    first = message_notifications(event(), ROOM)[0][0]
    assert message_notifications(event(), ROOM)[0][0].id == first.id
    assert notification_id("created", "$e") == first.id != notification_id("edited", "$e")


def test_reads_are_for_participants_only() -> None:
    read = read_notification(ROOM, "@seller:hs", "$e", 5, unread=2)
    assert read.data["reader"]["role"] == "seller" and read.data["unread"] == 2
    assert read_notification(ROOM, "@stranger:hs", "$e", 5, unread=0) is None
