"""Marketplace users with no Matrix ID anywhere: managed accounts, profiles, sessions that end
by themselves, on the hardened homeserver (the module mints them) behind the client gateway."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from nio import AsyncClient, RoomGetStateEventResponse, RoomSendResponse

from policy.transcript import verify_transcript
from tests.e2e.stack import Stack, hardened_stack, timeline, with_webhooks
from tests.e2e.test_lockdown import png
from tests.harness import Homeserver, WebhookReceiver, eventually, unique_id
from tests.https_server import AvatarServer


@pytest.fixture
async def avatars(tmp_path: Path) -> AsyncIterator[AvatarServer]:
    server = AvatarServer(tmp_path)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def stack(
    hardened_homeserver: Homeserver, avatars: AvatarServer, api_timings: dict, tmp_path: Path
) -> AsyncIterator[Stack]:
    identity = {"avatar_private_hosts": True, "avatar_ca_file": str(avatars.ca_file)}
    async with hardened_stack(
        hardened_homeserver, api_timings, tmp_path, identity=identity
    ) as stack:
        yield stack


def uid(role: str) -> str:
    return unique_id(role)


async def client_of(session: dict[str, Any]) -> AsyncClient:
    client = AsyncClient(session["homeserver_url"], session["matrix_id"], session["device_id"])
    client.access_token = session["access_token"]
    return client


async def says(sender: AsyncClient, reader: AsyncClient, room_id: str, text: str) -> None:
    """``sender`` posts ``text``, and ``reader`` sees it."""
    sent = await sender.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": text})
    assert isinstance(sent, RoomSendResponse), sent

    async def read() -> bool:
        return text in [e["content"].get("body") for e in await timeline(reader, room_id)]

    await eventually(read)


async def whoami(stack: Stack, session: dict[str, Any]) -> tuple[int, dict]:
    url = f"{session['homeserver_url']}/_matrix/client/v3/account/whoami"
    headers = {"Authorization": f"Bearer {session['access_token']}"}
    async with stack.session.get(url, headers=headers) as response:
        return response.status, await response.json()


async def test_a_marketplace_with_no_matrix_id_anywhere(
    stack: Stack, avatars: AvatarServer
) -> None:
    avatars.files["seller.png"] = (png(), "image/png")
    buyer, seller = uid("buyer"), uid("seller")
    clients: list[AsyncClient] = []
    async with stack.running():
        status, made = await stack.api.call("PUT", f"/users/{buyer}", {"display_name": "Ann B."})
        assert status == 201, made
        assert made["managed"] and made["matrix_id"] == f"@market_{buyer}:localhost"
        profile = {"display_name": "Sam the Seller", "avatar_url": avatars.url("seller.png")}
        status, made = await stack.api.call("PUT", f"/users/{seller}", profile)
        assert status == 201 and made["avatar_mxc"].startswith("mxc://"), made
        # The same profile again changes nothing and fetches nothing.
        status, again = await stack.api.call("PUT", f"/users/{seller}", profile)
        assert status == 200 and again["avatar_mxc"] == made["avatar_mxc"]
        assert avatars.fetched == ["/seller.png"]

        order = {
            "transaction_id": uid("order"),
            "title": "Road bike",
            "buyer": {"user_id": buyer},
            "seller": {"user_id": seller},
        }
        status, txn = await stack.api.call("POST", "/transactions", order)
        assert status == 201, txn
        room_id = txn["room_id"]
        assert txn["links"]["matrix_to"].startswith("https://matrix.to/#/%23market_transaction_")
        status, txn = await stack.api.call(
            "POST", f"/transactions/{order['transaction_id']}/payment"
        )
        assert status == 200 and txn["access"] == "open", txn

        sessions = {}
        for user in (buyer, seller):
            status, sessions[user] = await stack.api.call("POST", f"/users/{user}/sessions")
            assert status == 201, sessions[user]
            assert sessions[user]["homeserver_url"] == stack.config.gateway.client_url
            clients.append(await client_of(sessions[user]))
        buyer_client, seller_client = clients
        try:
            # Joined by the bridge: nobody accepted an invitation, and both can post.
            for client in clients:
                joined = await client.joined_rooms()
                assert room_id in joined.rooms, joined
            await says(buyer_client, seller_client, room_id, "Is it still there?")
            await says(seller_client, buyer_client, room_id, "Yes, come tomorrow")
            # The other party sees the profile the marketplace set.
            member = await buyer_client.room_get_state_event(
                room_id, "m.room.member", made["matrix_id"]
            )
            assert isinstance(member, RoomGetStateEventResponse), member
            member = member.content
            assert member["displayname"] == "Sam the Seller"
            assert member["avatar_url"] == made["avatar_mxc"]

            # Listed, then revoked: the token stops working at once.
            status, listed = await stack.api.call("GET", f"/users/{buyer}/sessions")
            device = sessions[buyer]["device_id"]
            assert status == 200 and [s["device_id"] for s in listed["sessions"]] == [device]
            status, left = await stack.api.call("DELETE", f"/users/{buyer}/sessions/{device}")
            assert status == 200 and left["sessions"] == [], left
            status, _ = await whoami(stack, sessions[buyer])
            assert status == 401
            status, me = await whoami(stack, sessions[seller])
            assert status == 200 and me["user_id"] == made["matrix_id"]
        finally:
            for client in clients:
                await client.close()


async def test_a_session_ends_at_its_expiry_with_the_bridge_stopped(stack: Stack) -> None:
    user = uid("buyer")
    async with stack.running():
        status, _ = await stack.api.call("PUT", f"/users/{user}", {"display_name": "Ann"})
        assert status == 201
        status, session = await stack.api.call(
            "POST", f"/users/{user}/sessions", {"ttl_seconds": 2}
        )
        assert status == 201, session
        status, _ = await whoami(stack, session)
        assert status == 200
    # The bridge is stopped: the homeserver alone ends the session.

    async def refused() -> bool:
        status, body = await whoami(stack, session)
        assert status == 401 and body["errcode"] == "M_UNKNOWN_TOKEN", body
        return True

    await eventually(refused, within=20)


async def test_bad_identity_requests_change_nothing(stack: Stack, avatars: AvatarServer) -> None:
    avatars.files["page.png"] = (b"<html>not an image</html>", "image/png")
    async with stack.running():
        user = uid("buyer")
        plain_http = "http://127.0.0.1/x.png"
        for body, errcode in (
            ({"display_name": "A", "avatar_url": plain_http}, "MARKET_INVALID_PARAM"),
            ({"display_name": "A", "avatar_url": avatars.url("page.png")}, "MARKET_BAD_AVATAR"),
            ({"display_name": "A", "avatar_url": avatars.url("missing.png")}, "MARKET_BAD_AVATAR"),
            ({"display_name": ""}, "MARKET_INVALID_PARAM"),
            ({"display_name": "A", "matrix_id": "@market_x:localhost"}, "MARKET_INVALID_PARAM"),
        ):
            status, answer = await stack.api.call("PUT", f"/users/{user}", body)
            assert (status, answer["errcode"]) == (400, errcode), (body, answer)
        status, answer = await stack.api.call("GET", f"/users/{user}")
        assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")
        status, answer = await stack.api.call("PUT", "/users/bad%20id", {"display_name": "A"})
        assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
        status, answer = await stack.api.call("POST", f"/users/{user}/sessions")
        assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")
        order = {
            "transaction_id": uid("order"),
            "title": "Lamp",
            "buyer": {"user_id": user},
            "seller": {"user_id": uid("seller")},
        }
        status, answer = await stack.api.call("POST", "/transactions", order)
        assert (status, answer["errcode"]) == (400, "MARKET_UNKNOWN_USER"), answer
        assert answer["fields"] == ["buyer.user_id"]


async def managed_deal(stack: Stack) -> tuple[str, str, dict]:
    """Two managed users and their paid transaction."""
    buyer, seller = uid("buyer"), uid("seller")
    for user in (buyer, seller):
        status, _ = await stack.api.call("PUT", f"/users/{user}", {"display_name": user})
        assert status == 201
    order = {
        "transaction_id": uid("order"),
        "title": "Desk",
        "buyer": {"user_id": buyer},
        "seller": {"user_id": seller},
    }
    status, txn = await stack.api.call("POST", "/transactions", order)
    assert status == 201, txn
    status, txn = await stack.api.call("POST", f"/transactions/{order['transaction_id']}/payment")
    assert status == 200, txn
    return buyer, seller, txn


async def test_suspension_stops_posting_and_reading_until_lifted(stack: Stack) -> None:
    async with stack.running() as bridge:
        buyer, _, txn = await managed_deal(stack)
        room_id = txn["room_id"]
        status, session = await stack.api.call("POST", f"/users/{buyer}/sessions")
        assert status == 201
        status, user = await stack.api.call("POST", f"/users/{buyer}/suspend", {"reason": "spam"})
        assert status == 200 and user["suspended"], user
        status, _ = await whoami(stack, session)
        assert status == 401  # every session ended
        members = await bridge.bot.memberships(room_id)
        assert members[user["matrix_id"]] == "leave"  # out of the room: no reading, no posting
        status, answer = await stack.api.call("POST", f"/users/{buyer}/sessions")
        assert (status, answer["errcode"]) == (409, "MARKET_USER_SUSPENDED")

        status, user = await stack.api.call("POST", f"/users/{buyer}/unsuspend")
        assert status == 200 and not user["suspended"]
        status, session = await stack.api.call("POST", f"/users/{buyer}/sessions")
        assert status == 201
        client = await client_of(session)
        try:
            sent = await client.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": "back again"}
            )
            assert isinstance(sent, RoomSendResponse), sent
        finally:
            await client.close()


async def test_erasure_waits_for_the_dispute_and_leaves_a_transcript_that_verifies(
    stack: Stack,
) -> None:
    async with stack.running():
        buyer, _, txn = await managed_deal(stack)
        status, session = await stack.api.call("POST", f"/users/{buyer}/sessions")
        client = await client_of(session)
        try:
            sent = await client.room_send(
                txn["room_id"], "m.room.message", {"msgtype": "m.text", "body": "I am Ann Xample"}
            )
            assert isinstance(sent, RoomSendResponse), sent
        finally:
            await client.close()
        path = f"/transactions/{txn['transaction_id']}/transcript"

        async def stored() -> bool:
            status, document = await stack.api.call("GET", path)
            return status == 200 and "I am Ann Xample" in json.dumps(document)

        await eventually(stored)
        dispute = {
            "dispute_id": uid("dispute"),
            "transaction_id": txn["transaction_id"],
            "reason": "Never arrived",
            "opened_by": "buyer",
        }
        status, _ = await stack.api.call("POST", "/disputes", dispute)
        assert status == 201
        status, answer = await stack.api.call("POST", f"/users/{buyer}/erase")
        assert (status, answer["errcode"]) == (409, "MARKET_USER_ON_HOLD"), answer
        status, _ = await stack.api.call(
            "POST", f"/disputes/{dispute['dispute_id']}/resolve", {"decision": "no_action"}
        )
        assert status == 200
        status, user = await stack.api.call("POST", f"/users/{buyer}/erase", {"reason": "GDPR"})
        assert status == 200 and user["display_name"] is None, user
        status, _ = await whoami(stack, session)
        assert status == 401
        status, document = await stack.api.call("GET", path)
        assert status == 200 and verify_transcript(document) == []
        assert "I am Ann Xample" not in json.dumps(document)
        assert "erased" in [entry["kind"] for entry in document["entries"]]
        status, export = await stack.api.call("GET", f"/users/{buyer}/export")
        assert status == 200 and "I am Ann Xample" not in json.dumps(export)
        status, answer = await stack.api.call("PUT", f"/users/{buyer}", {"display_name": "A"})
        assert (status, answer["errcode"]) == (409, "MARKET_USER_ERASED")


async def test_an_account_that_blocks_invitations_does_not_fail_the_create(
    stack: Stack, hardened_homeserver: Homeserver, hooks: WebhookReceiver
) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    carol = hardened_homeserver.synapse.register_user(unique_id("carol"), "pw-carol")
    url = (
        f"{hardened_homeserver.client_url}/_matrix/client/v3/user/{carol['user_id']}"
        "/account_data/m.invite_permission_config"
    )
    headers = {"Authorization": f"Bearer {carol['access_token']}"}
    async with stack.session.put(url, json={"default_action": "block"}, headers=headers) as r:
        assert r.status == 200, await r.text()
    async with stack.running():
        seller = uid("seller")
        status, _ = await stack.api.call("PUT", f"/users/{seller}", {"display_name": "Sam"})
        assert status == 201
        order = {
            "transaction_id": uid("order"),
            "title": "Chair",
            "buyer": {"user_id": uid("carol"), "matrix_id": carol["user_id"]},
            "seller": {"user_id": seller},
        }
        status, txn = await stack.api.call("POST", "/transactions", order)
        assert status == 201, txn
        assert txn["buyer"]["membership"] == "invite_blocked"
        assert txn["seller"]["membership"] is None

        async def told() -> list:
            return hooks.delivered("room.invite_failed")

        (hook,) = await eventually(told)
        assert hook["data"]["matrix_id"] == carol["user_id"]
        assert hook["data"]["transaction_id"] == order["transaction_id"]
