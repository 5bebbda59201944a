"""Admins moderate from Matrix: commands obeyed only from admins, in the right rooms."""

from __future__ import annotations

from nio import AsyncClient, RoomSendResponse

from appservice.matrix import MatrixBot
from bridge.app import Bridge
from tests.conftest import UserFactory
from tests.e2e.stack import (
    Stack,
    assert_refused,
    join,
    send,
    timeline,
    with_admin,
    with_webhooks,
)
from tests.harness import WebhookReceiver, eventually, unique_id


async def command(client: AsyncClient, room_id: str, text: str, bot: str) -> str:
    """Send a command; return the bot's reply to it."""
    sent = await send(client, room_id, text)
    assert isinstance(sent, RoomSendResponse), sent

    async def reply() -> str | None:
        for event in await timeline(client, room_id):
            content = event.get("content", {})
            replying = content.get("m.relates_to", {}).get("m.in_reply_to", {})
            if event.get("sender") == bot and replying.get("event_id") == sent.event_id:
                return content["body"]
        return None

    return await eventually(reply)


def bridge_bot(stack: Stack) -> MatrixBot:
    """The running bridge's bot."""
    assert stack.bridge is not None and stack.bridge.bot is not None
    return stack.bridge.bot


async def open_dispute(stack: Stack, room_id: str) -> dict:
    body = {
        "dispute_id": unique_id("dispute"),
        "transaction_id": stack.created[-1]["transaction_id"],
        "reason": "Never arrived.",
        "opened_by": "buyer",
    }
    status, dispute = await stack.api.call("POST", "/disputes", body)
    assert status == 201, dispute
    return dispute


async def management_room(bridge: Bridge, admin: AsyncClient) -> str:
    """The moderation room the bot makes once it is connected; the admin joins it."""

    async def made() -> str | None:
        return bridge.market.management.room_id

    room_id = await eventually(made)
    await join(admin, room_id)
    return room_id


async def test_an_admin_resolves_from_matrix_and_nobody_else_can(
    stack: Stack, hooks: WebhookReceiver, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(with_webhooks(stack.config, hooks.url), admin.user_id)
    async with stack.running() as bridge:
        bot = bridge.config.bot_mxid
        moderation = await management_room(bridge, admin)
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        dispute = await open_dispute(stack, room_id)
        dispute_room = dispute["room_id"]
        for person in (stack.buyer, admin):
            await join(person, dispute_room)
        resolve = f"!market resolve {dispute['dispute_id']} refund_buyer"

        # A party in the dispute room, an admin in the transaction room: each refused, and
        # nothing changes. A party who gets into the moderation room is removed at once.
        refusal = "Only the marketplace's admins can give commands"
        assert refusal in await command(stack.buyer, dispute_room, resolve, bot)
        await join(admin, room_id)
        assert refusal in await command(admin, room_id, resolve, bot)
        await bridge.bot.invite(moderation, stack.seller.user_id)
        await join(stack.seller, moderation)

        async def seller_removed() -> bool:
            return (await bridge.bot.memberships(moderation))[stack.seller.user_id] == "leave"

        await eventually(seller_removed)
        # A DM with the bot: it never joins one, so nothing happens there either.
        dm = await admin.room_create(invite=[bot], is_direct=True)
        await send(admin, dm.room_id, resolve)
        assert "!market" in await command(admin, moderation, "!market help", bot)
        status, unchanged = await stack.api.call("GET", f"/disputes/{dispute['dispute_id']}")
        assert unchanged["state"] == "open"

        # An admin in the dispute room.
        reply = await command(admin, dispute_room, resolve + " Photos show damage", bot)
        assert "is resolved: refund_buyer" in reply
        status, resolved = await stack.api.call("GET", f"/disputes/{dispute['dispute_id']}")
        assert status == 200
        assert (resolved["state"], resolved["source"], resolved["resolved_by"]) == (
            "resolved",
            "matrix",
            admin.user_id,
        )
        assert resolved["note"] == "Photos show damage"

        async def notified() -> list[dict]:
            return hooks.delivered("dispute.resolved")

        (event,) = await eventually(notified)
        assert (event["data"]["resolved_by"], event["data"]["source"]) == (admin.user_id, "matrix")

        # The removal's audit entry is written just after the kick.
        async def removal_audited() -> bool:
            status, page = await stack.api.call("GET", "/audit", params={"room_id": moderation})
            assert status == 200, page
            return ("member.removed", stack.seller.user_id) in [
                (e["action"], e["subject"]) for e in page["entries"]
            ]

        await eventually(removal_audited)
        status, page = await stack.api.call("GET", "/audit", params={"limit": "1000"})
        outcomes = [
            (e["actor"], e["outcome"]) for e in page["entries"] if e["action"] == "command"
        ]
        assert outcomes.count((admin.user_id, "done")) == 2  # help and resolve
        assert (stack.buyer.user_id, "refused") in outcomes
        assert (admin.user_id, "refused") in outcomes  # from the transaction room


async def test_lock_and_unlock_last_until_the_next_marketplace_transition(
    stack: Stack, hooks: WebhookReceiver, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(with_webhooks(stack.config, hooks.url), admin.user_id)
    async with stack.running() as bridge:
        bot = bridge.config.bot_mxid
        moderation = await management_room(bridge, admin)
        room_id = await stack.create()
        await join(stack.buyer, room_id)
        await stack.transition(room_id, "/payment")
        txn = stack.created[-1]["transaction_id"]
        assert "is locked" in await command(admin, moderation, f"!market lock {txn}", bot)
        await assert_refused(stack.buyer, room_id)

    async with stack.running() as bridge:  # a restart keeps the lock
        # The restarted bridge knows its moderation room once it has connected.
        assert await management_room(bridge, admin) == moderation
        status, record = await stack.api.call("GET", f"/transactions/{txn}")
        assert record["access"] == "locked"
        await assert_refused(stack.buyer, room_id)
        assert "is unlocked" in await command(admin, moderation, f"!market unlock {txn}", bot)
        assert isinstance(await send(stack.buyer, room_id, "back again"), RoomSendResponse)

        # Locked again, then the marketplace acts: its transition clears the admin's override.
        assert "is locked" in await command(admin, moderation, f"!market lock {txn}", bot)
        dispute = await open_dispute(stack, room_id)
        status, _ = await stack.api.call(
            "POST", f"/disputes/{dispute['dispute_id']}/resolve", {"decision": "no_action"}
        )
        assert status == 200
        status, record = await stack.api.call("GET", f"/transactions/{txn}")
        assert record["access"] == "open"
        assert isinstance(await send(stack.buyer, room_id, "open again"), RoomSendResponse)
        assert "unknown command" in await command(admin, moderation, "!market fly", bot)

        # remove: anyone but the parties and the bot, like an admin invited for the dispute
        # (strangers are removed by the policy bot on its own).
        assert "stay while the deal lasts" in await command(
            admin, moderation, f"!market remove {stack.buyer.user_id} {txn}", bot
        )
        assert (await bridge_bot(stack).memberships(room_id))[admin.user_id] == "invite"
        assert "was removed" in await command(
            admin, moderation, f"!market remove {admin.user_id} {txn}", bot
        )
        members = await bridge_bot(stack).memberships(room_id)
        assert members[admin.user_id] == "leave"
        assert members[stack.buyer.user_id] == "join"
        assert "one command per message" in await command(
            admin, moderation, f"!market lock {txn}\n!market unlock {txn}", bot
        )
        status, record = await stack.api.call("GET", f"/transactions/{txn}")
        assert record["access"] == "open"


async def test_admins_hear_of_new_disputes_and_dead_letters(
    stack: Stack, hooks: WebhookReceiver, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(with_webhooks(stack.config, hooks.url), admin.user_id)
    stack.config = with_webhooks(stack.config, hooks.url, retry_for_seconds=1)
    hooks.behave = lambda body, n: 410 if body["type"] == "dispute.opened" else 200
    async with stack.running() as bridge:
        moderation = await management_room(bridge, admin)
        room_id = await stack.create()
        await stack.transition(room_id, "/payment")
        dispute = await open_dispute(stack, room_id)

        async def announced() -> list[str]:
            bodies = [
                e["content"].get("body", "")
                for e in await timeline(admin, moderation)
                if e.get("sender") == bridge.config.bot_mxid
            ]
            found = [b for b in bodies if dispute["dispute_id"] in b or "given up" in b]
            return found if len(found) >= 2 else []

        messages = await eventually(announced)
        assert any(f"Dispute {dispute['dispute_id']} opened" in m for m in messages)
        assert any("dispute.opened" in m and "given up" in m for m in messages)
