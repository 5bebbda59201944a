"""Titles, reasons, notes and display names with HTML and script are escaped in every
notice's HTML, and kept as written in the plain body."""

from __future__ import annotations

import html

from nio import RoomSendResponse

from tests.conftest import UserFactory
from tests.e2e.stack import Stack, join, send, timeline, with_admin
from tests.e2e.test_moderation import management_room
from tests.harness import eventually, unique_id

TITLE = "<script>alert(1)</script> & <b>"
REASON = '<img src=x onerror="alert(2)"><script>steal()</script> & <b>broken</b>'
NOTE = "<a href='javascript:alert(3)'>see</a> <script>x</script> <b>"
DISPLAY_NAME = "<script>alert(4)</script><b>Support</b>"
RAW = ["<script", "<img", "<a href='javascript", "<b>broken", "<b>Support", 'onerror="']


def bot_notices(events: list[dict], bot: str) -> list[dict]:
    return [
        e["content"]
        for e in events
        if e.get("sender") == bot and e.get("type") == "m.room.message" and e["content"]
    ]


def assert_escaped(content: dict) -> None:
    formatted = content.get("formatted_body")
    if formatted is None:
        return
    assert content.get("format") == "org.matrix.custom.html"
    for raw in RAW:
        assert raw not in formatted, (raw, formatted)
    # Only the notice's own tags remain: every <b> it opens, it closes.
    assert formatted.count("<b>") == formatted.count("</b>"), formatted
    assert "<b><b>" not in formatted and "<b></b>" not in formatted, formatted


async def test_html_in_titles_reasons_and_names_is_escaped(
    stack: Stack, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(stack.config, admin.user_id)
    await stack.buyer.set_displayname(DISPLAY_NAME)
    async with stack.running() as bridge:
        bot = bridge.config.bot_mxid
        moderation = await management_room(bridge, admin)
        body = {**stack.transaction(), "title": TITLE}
        status, txn = await stack.api.call("POST", "/transactions", body)
        assert status == 201, txn
        room_id = txn["room_id"]
        assert txn["title"] == TITLE  # stored as given: escaping is the notices' job
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        status, _ = await stack.api.call("POST", f"/transactions/{txn['transaction_id']}/payment")
        assert status == 200
        # A broken rule: the warning names the sender (whose display name is HTML).
        phone = await send(stack.buyer, room_id, "call me on +44 7911 123456")
        assert isinstance(phone, RoomSendResponse)
        dispute_id = unique_id("dispute")
        status, dispute = await stack.api.call(
            "POST",
            "/disputes",
            {
                "dispute_id": dispute_id,
                "transaction_id": txn["transaction_id"],
                "reason": REASON,
                "opened_by": "buyer",
            },
        )
        assert status == 201, dispute
        dispute_room = dispute["room_id"]
        await join(admin, dispute_room)
        status, resolved = await stack.api.call(
            "POST", f"/disputes/{dispute_id}/resolve", {"decision": "no_action", "note": NOTE}
        )
        assert status == 200, resolved

        async def all_notices() -> dict[str, list[dict]]:
            found = {
                "transaction": bot_notices(await timeline(stack.seller, room_id), bot),
                "dispute": bot_notices(await timeline(admin, dispute_room), bot),
                "moderation": bot_notices(await timeline(admin, moderation), bot),
            }
            bodies = {k: " ".join(c.get("body", "") for c in v) for k, v in found.items()}
            assert "Payment for" in bodies["transaction"], bodies
            assert "your message was removed" in bodies["transaction"], bodies
            assert "A dispute about" in bodies["dispute"], bodies
            assert "The dispute is resolved" in bodies["dispute"], bodies
            assert dispute_id in bodies["moderation"], bodies
            return found

        notices = await eventually(all_notices, within=30)
        checked = 0
        for contents in notices.values():
            for content in contents:
                assert_escaped(content)
                checked += content.get("formatted_body") is not None
        assert checked >= 5
        # The escaped text is there, and the plain bodies keep what was written.
        escaped_title = html.escape(TITLE)
        transaction_html = [c.get("formatted_body", "") for c in notices["transaction"]]
        assert any(escaped_title in h for h in transaction_html), transaction_html
        assert any(TITLE in c["body"] for c in notices["transaction"])
        opened = [c for c in notices["dispute"] if "A dispute about" in c["body"]]
        assert opened and REASON in opened[0]["body"] and TITLE in opened[0]["body"]
        assert html.escape(REASON) in opened[0]["formatted_body"]
        resolved_notice = [c for c in notices["dispute"] if "is resolved" in c["body"]]
        assert resolved_notice and NOTE in resolved_notice[0]["body"]
        assert html.escape(NOTE) in resolved_notice[0]["formatted_body"]
