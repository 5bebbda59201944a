"""Admin commands: refused from transaction rooms, DMs and non-admins, and one per message;
a refused command changes nothing."""

from __future__ import annotations

from tests.conftest import UserFactory
from tests.e2e.stack import Stack, join, send, with_admin
from tests.e2e.test_moderation import command, management_room, open_dispute
from tests.harness import eventually, unique_id

REFUSAL = "Only the marketplace's admins can give commands"


async def access(stack: Stack, transaction_id: str) -> str:
    status, record = await stack.api.call("GET", f"/transactions/{transaction_id}")
    assert status == 200, record
    return record["access"]


async def test_commands_from_the_wrong_place_or_person_change_nothing(
    stack: Stack, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(stack.config, admin.user_id)
    async with stack.running() as bridge:
        bot = bridge.config.bot_mxid
        moderation = await management_room(bridge, admin)
        # An id without digits: a party's command naming it must not pass for a phone number.
        body = {**stack.transaction(), "transaction_id": unique_id("order")}
        status, created = await stack.api.call("POST", "/transactions", body)
        assert status == 201, created
        stack.created.append(created)
        room_id = created["room_id"]
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        txn = stack.created[-1]["transaction_id"]
        lock = f"!market lock {txn}"

        # The parties in their transaction room: refused.
        assert REFUSAL in await command(stack.buyer, room_id, lock, bot)
        assert REFUSAL in await command(stack.seller, room_id, f"!market unlock {txn}", bot)
        # A DM with the bot: it never joins one, so the command is never even read.
        dm = await admin.room_create(invite=[bot], is_direct=True)
        await send(admin, dm.room_id, lock)
        # Several commands in one message, whatever the line break: refused as a whole.
        for newline in ("\n", "\r\n", "\r", "\u2028", "\u2029", "\n\n"):
            text = f"!market lock {txn}{newline}!market unlock {txn}"
            assert "one command per message" in await command(admin, moderation, text, bot)
        assert "one command per message" in await command(
            admin, moderation, f"!market help\n!market lock {txn}", bot
        )
        # A later command in the moderation room is answered: everything before it in that
        # room was read; the DM and the transaction room changed nothing either.
        assert txn in await command(admin, moderation, f"!market status {txn}", bot)
        assert await access(stack, txn) == "open"
        member = await admin.room_get_state_event(dm.room_id, "m.room.member", bot)
        assert member.content["membership"] == "invite", member

        status, page = await stack.api.call("GET", "/audit", params={"limit": "1000"})
        assert status == 200
        commands = [e for e in page["entries"] if e["action"] == "command"]
        refused = [(e["actor"], e["room_id"]) for e in commands if e["outcome"] == "refused"]
        assert (stack.buyer.user_id, room_id) in refused
        assert (stack.seller.user_id, room_id) in refused
        assert not [e for e in commands if e["room_id"] == dm.room_id]
        assert not [
            e
            for e in page["entries"]
            if e["action"] == "room.state_changed"
            and e["transaction_id"] == txn
            and e["actor"] != "marketplace"
        ]

        # The same command, alone, from an admin in the moderation room, does work: the
        # refusals above were about where and who, not about the command.
        assert "is locked" in await command(admin, moderation, lock, bot)

        async def locked() -> bool:
            return await access(stack, txn) == "locked"

        await eventually(locked)

        # An admin in a transaction room (admins are invited there once a dispute opens).
        dispute = await open_dispute(stack, room_id)
        await join(admin, room_id)
        resolve = f"!market resolve {dispute['dispute_id']} refund_buyer"
        assert REFUSAL in await command(admin, room_id, resolve, bot)
        status, unchanged = await stack.api.call("GET", f"/disputes/{dispute['dispute_id']}")
        assert (status, unchanged["state"]) == (200, "open")
        assert "is resolved" in await command(admin, moderation, resolve, bot)
