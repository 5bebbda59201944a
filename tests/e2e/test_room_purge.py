"""A room removed from the homeserver for good: the bridge's bot asks the marketplace's Synapse
module (synapse_module/rooms.py) on the hardened homeserver, and members, history and the
room's future joins are gone; a room the bot did not make, or a request that names no room, is
refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import JoinedRoomsResponse, JoinError, RoomMessagesError

from appservice.matrix import ROOM_PURGE_PATH
from tests.e2e.stack import Stack, hardened_stack, timeline
from tests.e2e.test_identity import client_of, managed_deal, says
from tests.harness import Homeserver, eventually, random_secret, unique_id


@pytest.fixture
async def stack(
    hardened_homeserver: Homeserver, api_timings: dict, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with hardened_stack(hardened_homeserver, api_timings, tmp_path) as stack:
        yield stack


async def synapse_call(
    stack: Stack, hs: Homeserver, method: str, path: str, body: Any = None, token: str = ""
) -> tuple[int, dict]:
    """A request straight to Synapse, as the bot (its appservice token) unless ``token``."""
    headers = {"Authorization": f"Bearer {token or hs.as_token}"}
    url = hs.synapse.url + path
    async with stack.session.request(method, url, json=body, headers=headers) as response:
        return response.status, json.loads(await response.text() or "{}")


async def paid_room_with_talk(stack: Stack) -> tuple[str, list[Any], str]:
    """A paid transaction's room, its two parties' clients (both joined, both talked), and
    the mask id of a message the module masked (its original kept for the bot)."""
    buyer, seller, txn = await managed_deal(stack)
    room_id = txn["room_id"]
    clients = []
    for user in (buyer, seller):
        status, session = await stack.api.call("POST", f"/users/{user}/sessions")
        assert status == 201, session
        clients.append(await client_of(session))
    buyer_client, seller_client = clients
    await says(buyer_client, seller_client, room_id, "Is the desk still there?")
    await says(seller_client, buyer_client, room_id, "Yes, come on Friday")
    sent = await seller_client.room_send(
        room_id, "m.room.message", {"msgtype": "m.text", "body": "or call 07911 123456"}
    )

    async def masked() -> str:
        (event,) = [
            e for e in await timeline(buyer_client, room_id) if e["event_id"] == sent.event_id
        ]
        return event["content"]["org.marketplace.masked"]["id"]

    return room_id, clients, await eventually(masked)


@pytest.fixture
async def operator(hardened_homeserver: Homeserver) -> dict[str, Any]:
    """A Synapse server admin: the one kind of user besides the bot and the marketplace's
    admins that the hardened homeserver lets create rooms (Synapse skips the module's
    `user_may_create_room` for server admins)."""
    return await asyncio.to_thread(
        hardened_homeserver.synapse.register_user,
        unique_id("operator"),
        random_secret(),
        admin=True,
    )


async def test_a_purged_room_is_gone_for_its_members_and_stays_blocked(
    stack: Stack, hardened_homeserver: Homeserver, operator: dict[str, Any]
) -> None:
    hs, admin_token = hardened_homeserver, operator["access_token"]
    room_path = "/_synapse/admin/v1/rooms/"
    async with stack.running() as bridge:
        room_id, clients, mask_id = await paid_room_with_talk(stack)
        try:
            assert await bridge.bot.masked_original(mask_id) is not None
            status, room = await synapse_call(
                stack, hs, "GET", room_path + room_id, token=admin_token
            )
            assert (status, room["joined_local_members"]) == (200, 3), room

            await bridge.bot.purge_room(room_id)

            for client in clients:
                joined = await client.joined_rooms()
                assert isinstance(joined, JoinedRoomsResponse), joined
                assert room_id not in joined.rooms
                # Blocked: nobody joins it again (Synapse's own refusal, through the gateway).
                refused = await client.join(room_id)
                assert isinstance(refused, JoinError), refused
                assert refused.transport_response.status == 403
                assert "blocked" in refused.message
                history = await client.room_messages(room_id, limit=10)
                assert isinstance(history, RoomMessagesError), history
                assert (history.transport_response.status, history.status_code) == (
                    403,
                    "M_FORBIDDEN",
                )
            # Purged from Synapse's database, and blocked by the bot.
            status, room = await synapse_call(
                stack, hs, "GET", room_path + room_id, token=admin_token
            )
            assert (status, room.get("errcode")) == (404, "M_NOT_FOUND"), room
            status, block = await synapse_call(
                stack, hs, "GET", f"{room_path}{room_id}/block", token=admin_token
            )
            assert (status, block) == (200, {"block": True, "user_id": bridge.bot.user_id})
            # The originals the module kept of the room's masked messages went with it.
            assert await bridge.bot.masked_original(mask_id) is None

            # The bridge retries after a crash: a second call is no error.
            await bridge.bot.purge_room(room_id)
        finally:
            for client in clients:
                await client.close()


async def test_every_member_leaves_the_room_the_module_lets_the_leaves_through(
    stack: Stack, hardened_homeserver: Homeserver
) -> None:
    async with stack.running() as bridge:
        room_id, clients, _ = await paid_room_with_talk(stack)
        for client in clients:
            await client.close()
        members = {
            user for user, m in (await bridge.bot.memberships(room_id)).items() if m == "join"
        }
        assert len(members) == 3  # the bot and both parties

        status, answer = await synapse_call(
            stack, hardened_homeserver, "POST", ROOM_PURGE_PATH, {"room_id": room_id}
        )
        assert status == 200, answer
        assert (answer["room_id"], answer["purged"]) == (room_id, True), answer
        assert sorted(answer["kicked_users"]) == sorted(members)
        # Again: the room is unknown now; blocked again, nobody left to kick.
        status, again = await synapse_call(
            stack, hardened_homeserver, "POST", ROOM_PURGE_PATH, {"room_id": room_id}
        )
        assert (status, again) == (200, {"room_id": room_id, "purged": True, "kicked_users": []})


async def operators_room(stack: Stack, hs: Homeserver, operator: dict[str, Any]) -> str:
    token = operator["access_token"]
    status, made = await synapse_call(
        stack, hs, "POST", "/_matrix/client/v3/createRoom", {"preset": "private_chat"}, token
    )
    assert status == 200, made
    room_id = made["room_id"]
    status, sent = await synapse_call(
        stack,
        hs,
        "PUT",
        f"/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{unique_id('txn')}",
        {"msgtype": "m.text", "body": "the operator's own notes"},
        token,
    )
    assert status == 200, sent
    return room_id


async def test_a_room_the_bot_did_not_create_is_refused_and_left_intact(
    stack: Stack, hardened_homeserver: Homeserver, operator: dict[str, Any]
) -> None:
    hs, token = hardened_homeserver, operator["access_token"]
    room_id = await operators_room(stack, hs, operator)

    status, answer = await synapse_call(stack, hs, "POST", ROOM_PURGE_PATH, {"room_id": room_id})
    assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), answer

    status, joined = await synapse_call(
        stack, hs, "GET", "/_matrix/client/v3/joined_rooms", None, token
    )
    assert status == 200 and room_id in joined["joined_rooms"], joined
    status, page = await synapse_call(
        stack,
        hs,
        "GET",
        f"/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=10",
        None,
        token,
    )
    assert status == 200, page
    assert "the operator's own notes" in [e["content"].get("body") for e in page["chunk"]]
    status, block = await synapse_call(
        stack, hs, "GET", f"/_synapse/admin/v1/rooms/{room_id}/block", None, token
    )
    assert (status, block) == (200, {"block": False})


async def test_only_the_bot_may_ask(
    stack: Stack, hardened_homeserver: Homeserver, operator: dict[str, Any]
) -> None:
    hs = hardened_homeserver
    room_id = await operators_room(stack, hs, operator)
    status, answer = await synapse_call(
        stack, hs, "POST", ROOM_PURGE_PATH, {"room_id": room_id}, operator["access_token"]
    )
    assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), answer
    assert "bot" in answer["error"]


async def test_a_bad_room_id_is_refused(stack: Stack, hardened_homeserver: Homeserver) -> None:
    for body in (
        {},
        {"room_id": None},
        {"room_id": 42},
        {"room_id": ["!abc:localhost"]},
        {"room_id": ""},
        {"room_id": "!"},
        {"room_id": "!short"},  # a domainless room id is 43 base64 characters
        {"room_id": "abc:localhost"},
        {"room_id": "#market_alias:localhost"},
        {"room_id": "@marketbot:localhost"},
    ):
        status, answer = await synapse_call(
            stack, hardened_homeserver, "POST", ROOM_PURGE_PATH, body
        )
        assert (status, answer.get("errcode")) == (400, "M_INVALID_PARAM"), (body, answer)
