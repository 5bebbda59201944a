"""Transaction rooms on a real Synapse, used by real clients: locked, open, archived."""

from __future__ import annotations

import asyncio
import logging
import uuid
from contextlib import closing

from aiohttp import ClientSession
from mautrix.appservice import AppServiceAPI
from nio import (
    JoinError,
    RoomGetStateEventResponse,
    RoomSendResponse,
)
from pydantic import AnyHttpUrl

from appservice.matrix import MatrixBot
from policy.rooms import RoomKind, alias_localpart
from tests.conftest import UserFactory
from tests.e2e.stack import Stack, assert_refused, join, send, state, timeline
from tests.harness import Homeserver, TcpProxy, eventually


async def name_and_topic(stack: Stack, room_id: str) -> tuple[str, str]:
    """What the buyer's client shows: the room's name and topic."""
    name = await state(stack.buyer, room_id, "m.room.name")
    return name["name"], (await state(stack.buyer, room_id, "m.room.topic"))["topic"]


async def test_locked_until_payment_open_after_archived_on_close(stack: Stack) -> None:
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
            await assert_refused(party, room_id)
        name, topic = await name_and_topic(stack, room_id)
        assert name == "Vintage <bike> & helmet · awaiting payment"
        assert topic.startswith("Awaiting payment:")

        await stack.transition(room_id, "/payment")
        name, topic = await name_and_topic(stack, room_id)  # a payment renames the room
        assert name == "Vintage <bike> & helmet · open" and topic.startswith("Open:")
        hello = await send(stack.buyer, room_id, "hello, is it still available?")
        reply = await send(stack.seller, room_id, "yes, shipping tomorrow")
        assert isinstance(hello, RoomSendResponse) and isinstance(reply, RoomSendResponse)
        seen_by_seller = {e["event_id"] for e in await timeline(stack.seller, room_id)}
        seen_by_buyer = {e["event_id"] for e in await timeline(stack.buyer, room_id)}
        assert hello.event_id in seen_by_seller and reply.event_id in seen_by_buyer

        await stack.transition(room_id, "/close", {"outcome": "completed"})
        for party in (stack.buyer, stack.seller):
            await assert_refused(party, room_id)
        assert (await state(stack.buyer, room_id, "m.room.power_levels"))["events_default"] == 100
        name, topic = await name_and_topic(stack, room_id)
        assert name == "Vintage <bike> & helmet · closed" and topic.startswith("Closed:")

        notices = [
            e["content"]
            for e in reversed(await timeline(stack.buyer, room_id))
            if e["type"] == "m.room.message" and e["content"].get("msgtype") == "m.notice"
        ]
        assert len(notices) == 3
        for notice, words in zip(
            notices,
            ["opens once the marketplace confirms payment", "the chat is open", "is completed"],
            strict=True,
        ):
            assert words in notice["body"]
        assert "Vintage &lt;bike&gt; &amp; helmet" in notices[0]["formatted_body"]
        # Element warns that the room is not end-to-end encrypted: the first notice says why.
        assert "not end-to-end encrypted, on purpose" in notices[0]["body"]


async def test_outsiders_stay_out_and_parties_cannot_change_the_room(
    stack: Stack, make_user: UserFactory
) -> None:
    outsider = await make_user("outsider")
    async with stack.running():
        room_id = await stack.create()
        await stack.transition(room_id, "/payment")  # the most permissive state
        joined = await outsider.join(room_id)
        assert isinstance(joined, JoinError) and joined.status_code == "M_FORBIDDEN"
        await join(stack.buyer, room_id)

        attempts = [
            ("m.room.power_levels", {"users": {stack.buyer.user_id: 100}}),
            ("m.room.name", {"name": "mine now"}),
            ("m.room.topic", {"topic": "mine now"}),
            ("m.room.encryption", {"algorithm": "m.megolm.v1.aes-sha2"}),
            ("m.room.join_rules", {"join_rule": "public"}),
            ("m.room.history_visibility", {"history_visibility": "world_readable"}),
        ]
        for event_type, content in attempts:
            response = await stack.buyer.room_put_state(room_id, event_type, content)
            assert getattr(response, "status_code", None) == "M_FORBIDDEN", (event_type, response)
        invited = await stack.buyer.room_invite(room_id, outsider.user_id)
        assert getattr(invited, "status_code", None) == "M_FORBIDDEN"

        assert (await state(stack.buyer, room_id, "m.room.join_rules"))["join_rule"] == "invite"
        guests = await state(stack.buyer, room_id, "m.room.guest_access")
        assert guests["guest_access"] == "forbidden"
        encryption = await stack.buyer.room_get_state_event(room_id, "m.room.encryption")
        assert not isinstance(encryption, RoomGetStateEventResponse)  # never encrypted


async def test_ten_concurrent_creates_make_one_room(stack: Stack) -> None:
    body = stack.transaction()
    async with stack.running() as bridge:
        answers = await asyncio.gather(
            *(stack.api.call("POST", "/transactions", body) for _ in range(10))
        )
        assert sorted(status for status, _ in answers) == [200] * 9 + [201]
        assert len({answer["room_id"] for _, answer in answers}) == 1
        localpart = alias_localpart("market_", RoomKind.TRANSACTION, body["transaction_id"])
        bot = bridge.bot
        assert await bot.resolve_alias(f"#{localpart}:localhost") == answers[0][1]["room_id"]
        memberships = await bot.memberships(answers[0][1]["room_id"])
        assert memberships == {
            bridge.config.bot_mxid: "join",
            stack.buyer.user_id: "invite",
            stack.seller.user_id: "invite",
        }


async def test_a_restarted_bridge_still_enforces_the_room(stack: Stack) -> None:
    async with stack.running():
        room_id = await stack.create()
        await join(stack.buyer, room_id)
        await stack.transition(room_id, "/payment")
    # While the bridge is down, the room's power levels are changed behind its back.
    async with ClientSession() as session:
        api = AppServiceAPI(
            str(stack.config.homeserver.url).rstrip("/"),
            stack.config.bot_mxid,
            stack.config.appservice.as_token.get_secret_value(),
            log=logging.getLogger("tests.tamper"),
            client_session=session,
        )
        tamper = MatrixBot(api, stack.config.bot_mxid)
        levels = await tamper.get_state(room_id, "m.room.power_levels")
        await tamper.send_state(
            room_id,
            "m.room.power_levels",
            {**levels, "events_default": 50, "users": {stack.buyer.user_id: 100}},
        )
    async with stack.running():

        async def restored() -> bool:
            levels = await state(stack.buyer, room_id, "m.room.power_levels")
            return levels["events_default"] == 0 and levels["users"] == {}

        await eventually(restored)
        assert isinstance(await send(stack.buyer, room_id, "still open"), RoomSendResponse)
        await stack.transition(room_id, "/close", {"outcome": "refunded"})
        await assert_refused(stack.buyer, room_id)
    async with stack.running():
        # A second restart and repeated calls post no notice twice.
        await stack.transition(room_id, "/close", {"outcome": "refunded"})
        notices = [
            e
            for e in await timeline(stack.buyer, room_id)
            if e["type"] == "m.room.message" and e["sender"] == stack.config.bot_mxid
        ]
        assert len(notices) == 3


async def test_a_room_made_before_a_crash_is_adopted_not_doubled(stack: Stack) -> None:
    body = stack.transaction()
    async with stack.running() as bridge:
        # A previous attempt created the room, then died before recording it.
        bot = bridge.bot
        localpart = alias_localpart("market_", RoomKind.TRANSACTION, body["transaction_id"])
        orphan = await bot.create_room(
            alias_localpart=localpart,
            name="half made",
            topic="",
            room_version="12",
            power_levels={"events_default": 0},
            initial_state=[],
        )
        status, answer = await stack.api.call("POST", "/transactions", body)
        assert (status, answer["room_id"]) == (201, orphan)
        levels = await bot.get_state(orphan, "m.room.power_levels")
        assert levels["events_default"] == 50
        name = (await bot.get_state(orphan, "m.room.name"))["name"]
        assert name == f"{body['title']} · awaiting payment"
        memberships = await bot.memberships(orphan)
        assert memberships[stack.buyer.user_id] == memberships[stack.seller.user_id] == "invite"


async def test_an_alias_naming_a_room_never_made_is_replaced(
    homeserver: Homeserver, stack: Stack
) -> None:
    body = stack.transaction()
    async with stack.running() as bridge:
        # Synapse stores a new room, takes its alias, then writes the room's first events:
        # stopped before the last step, it leaves an alias naming a room no one can join.
        never_made = f"!{uuid.uuid4().hex}:localhost"
        localpart = alias_localpart("market_", RoomKind.TRANSACTION, body["transaction_id"])
        alias = f"#{localpart}:localhost"
        with closing(homeserver.database()) as db, db:
            db.execute(
                "INSERT INTO rooms (room_id, is_public, creator, room_version)"
                " VALUES (?, false, ?, '12')",
                (never_made, bridge.bot.user_id),
            )
            db.execute(
                "INSERT INTO room_aliases (room_alias, room_id, creator) VALUES (?, ?, ?)",
                (alias, never_made, bridge.bot.user_id),
            )
            db.execute(
                "INSERT INTO room_alias_servers (room_alias, server) VALUES (?, 'localhost')",
                (alias,),
            )
        assert await bridge.bot.resolve_alias(alias) == never_made

        status, answer = await stack.api.call("POST", "/transactions", body)
        assert status == 201, answer
        room_id = answer["room_id"]
        assert room_id != never_made
        assert await bridge.bot.resolve_alias(alias) == room_id
        memberships = await bridge.bot.memberships(room_id)
        assert memberships[stack.buyer.user_id] == memberships[stack.seller.user_id] == "invite"
        await join(stack.buyer, room_id)
        await assert_refused(stack.buyer, room_id)  # locked until payment, as planned


async def test_a_homeserver_outage_is_503_and_the_retry_completes(
    homeserver: Homeserver, stack: Stack
) -> None:
    proxy = TcpProxy(homeserver.synapse.port)
    await proxy.start()
    stack.config = stack.config.model_copy(
        update={
            "homeserver": stack.config.homeserver.model_copy(update={"url": AnyHttpUrl(proxy.url)})
        }
    )
    try:
        async with stack.running():
            room_id = await stack.create()
            await join(stack.buyer, room_id)
            await proxy.stop()

            status, answer = await stack.api.call("POST", "/transactions", stack.transaction())
            assert (status, answer["errcode"]) == (503, "MARKET_HOMESERVER_UNAVAILABLE")
            (txn,) = stack.created
            path = f"/transactions/{txn['transaction_id']}/payment"
            status, answer = await stack.api.call("POST", path)
            assert (status, answer["errcode"]) == (503, "MARKET_HOMESERVER_UNAVAILABLE")
            await assert_refused(stack.buyer, room_id)  # still locked

            await proxy.start()
            status, answer = await stack.api.call("POST", path)
            assert (status, answer["state"], answer["room_id"]) == (200, "paid", room_id)
            assert isinstance(await send(stack.buyer, room_id, "open now"), RoomSendResponse)
    finally:
        await proxy.stop()
