"""No way around the lock: the hardened homeserver (our module and settings, as in make run)
refuses side channels, impostors, contact details before delivery, and disguised uploads."""

from __future__ import annotations

import json
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession
from nio import AsyncClient, RoomCreateError, RoomCreateResponse, RoomSendResponse

from tests.conftest import UserFactory, user_factory
from tests.e2e.stack import Stack, join, send, timeline, with_webhooks
from tests.e2e.test_moderation import command, management_room
from tests.harness import (
    HARDENED_ADMIN,
    Homeserver,
    WebhookReceiver,
    eventually,
    fresh_database,
    random_secret,
)


@pytest.fixture(scope="session")
def admin_account(hardened_homeserver: Homeserver) -> dict[str, Any]:
    """The admin the hardened homeserver's module was configured with, registered once."""
    return hardened_homeserver.synapse.register_user(HARDENED_ADMIN, random_secret())


@pytest.fixture
async def users(hardened_homeserver: Homeserver) -> AsyncIterator[UserFactory]:
    async with user_factory(hardened_homeserver) as make:
        yield lambda role: make(f"{role}-{uuid.uuid4().hex[:8]}")


@pytest.fixture
async def admin(
    hardened_homeserver: Homeserver, admin_account: dict
) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(hardened_homeserver.synapse.url, admin_account["user_id"])
    client.user_id, client.access_token = admin_account["user_id"], admin_account["access_token"]
    yield client
    await client.close()


@pytest.fixture
async def stack(
    hardened_homeserver: Homeserver, users: UserFactory, api_timings: dict, tmp_path: Path
) -> AsyncIterator[Stack]:
    # The lockdown is the homeserver's; one storage backend is enough to exercise it.
    async with fresh_database("sqlite", tmp_path) as url, ClientSession() as session:
        yield Stack(
            hardened_homeserver.bridge_config(url),
            session,
            await users("buyer"),
            await users("seller"),
            api_timings,
        )


async def call(
    stack: Stack, client: AsyncClient, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, dict]:
    """A call to the homeserver as ``client`` (``path`` after the host), for what nio does
    not wrap."""
    headers = {"Authorization": f"Bearer {client.access_token}", **kwargs.pop("headers", {})}
    url = f"{stack.config.homeserver.url}{path.lstrip('/')}"
    async with stack.session.request(method, url, json=body, headers=headers, **kwargs) as r:
        return r.status, json.loads(await r.text() or "{}")


def png() -> bytes:
    """A real 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", pixels)
        + chunk(b"IEND", b"")
    )


async def upload(stack: Stack, client: AsyncClient, data: bytes, content_type: str):
    return await call(
        stack,
        client,
        "POST",
        "/_matrix/media/v3/upload",
        data=data,
        headers={"Content-Type": content_type},
        params={"filename": "file"},
    )


async def test_parties_open_no_side_channel(stack: Stack, users: UserFactory) -> None:
    outsider = await users("outsider")
    async with stack.running():
        room_id = await stack.create()
        await join(stack.buyer, room_id)
        # No room of their own, no direct chat with the seller.
        for options in ({}, {"invite": [stack.seller.user_id], "is_direct": True}):
            refused = await stack.buyer.room_create(**options)
            assert isinstance(refused, RoomCreateError), refused
            assert refused.status_code == "M_FORBIDDEN"
            assert "Only the marketplace creates rooms" in refused.message
        # No inviting anyone, wherever.
        status, body = await call(
            stack,
            stack.buyer,
            "POST",
            f"/_matrix/client/v3/rooms/{room_id}/invite",
            {"user_id": outsider.user_id},
        )
        assert (status, body["errcode"]) == (403, "M_FORBIDDEN")
        assert "Only the marketplace invites" in body["error"]
        # No alias to advertise a room with.
        status, body = await call(
            stack,
            stack.buyer,
            "PUT",
            "/_matrix/client/v3/directory/room/%23side:localhost",
            {"room_id": room_id},
        )
        assert status == 403


async def test_the_directory_shows_only_people_you_share_a_room_with(
    stack: Stack, users: UserFactory
) -> None:
    stranger = await users("stranger")
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)

        async def found(who: AsyncClient) -> list[str]:
            localpart = who.user_id[1:].split(":")[0]
            status, body = await call(
                stack,
                stack.buyer,
                "POST",
                "/_matrix/client/v3/user_directory/search",
                {"search_term": localpart, "limit": 10},
            )
            assert status == 200, body
            return [r["user_id"] for r in body["results"]]

        # The directory is updated in the background: wait until the seller shows.
        await eventually(lambda: found(stack.seller))
        assert await found(stranger) == []
        # Nor a stranger's profile.
        status, _ = await call(
            stack, stack.buyer, "GET", f"/_matrix/client/v3/profile/{stranger.user_id}"
        )
        assert status == 403


async def test_a_party_cannot_pose_as_support(stack: Stack) -> None:
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        status, body = await call(
            stack,
            stack.buyer,
            "PUT",
            f"/_matrix/client/v3/profile/{stack.buyer.user_id}/displayname",
            {"displayname": "Support"},
        )
        assert status in (400, 403), body
        # A per-room name is replaced by the global profile.
        await call(
            stack,
            stack.buyer,
            "PUT",
            f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{stack.buyer.user_id}",
            {"membership": "join", "displayname": "Support"},
        )
        status, member = await call(
            stack,
            stack.seller,
            "GET",
            f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{stack.buyer.user_id}",
        )
        assert status == 200 and member.get("displayname") != "Support"


async def test_contact_details_are_refused_before_delivery(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        refused = await send(stack.buyer, room_id, "call me: +44 7911 123456")
        assert not isinstance(refused, RoomSendResponse), refused
        assert refused.status_code == "M_FORBIDDEN"
        assert "contact details" in refused.message
        fine = await send(stack.buyer, room_id, "See you on Friday at 10:30!")
        assert isinstance(fine, RoomSendResponse), fine

        async def delivered() -> list[dict]:
            return [d for d in hooks.delivered("message.created")]

        (created,) = await eventually(delivered)
        assert created["data"]["event_id"] == fine.event_id
        # Nobody saw it: not the seller, not the marketplace; the bot had nothing to redact.
        bodies = [e["content"].get("body", "") for e in await timeline(stack.seller, room_id)]
        assert not any("7911" in body for body in bodies)
        assert not any("7911" in json.dumps(d) for d in hooks.delivered())
        assert not hooks.delivered("policy.violation")


async def test_uploads_are_judged_by_their_bytes(stack: Stack, admin: AsyncClient) -> None:
    executable = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 256
    status, body = await upload(stack, stack.buyer, executable, "image/png")
    # Synapse answers every media refusal by a module with its own words.
    assert (status, body.get("error")) == (400, "Bad content"), body
    status, body = await upload(stack, stack.buyer, png(), "image/png")
    assert status == 200 and body["content_uri"].startswith("mxc://"), body
    status, body = await upload(stack, stack.buyer, b'{"entries": []}', "application/json")
    assert status == 200, body
    # Parties are limited to policy.max_media_bytes (1 MiB on this homeserver); admins are not.
    big = png() + b"\x00" * (1024 * 1024)
    status, body = await upload(stack, stack.buyer, big, "image/png")
    assert status in (400, 403, 413) and body["errcode"] != "M_UNKNOWN", body
    status, body = await upload(stack, admin, big, "image/png")
    assert status == 200, body


async def test_admins_and_the_bot_still_work(stack: Stack, admin: AsyncClient) -> None:
    async with stack.running() as bridge:
        # The bot creates and invites (and, with profiles limited, still tells a typo from a
        # user through the module).
        room_id = await stack.create()
        bad = stack.transaction()
        bad["buyer"] = {"user_id": "u-ghost", "matrix_id": "@nobody-here:localhost"}
        status, body = await stack.api.call("POST", "/transactions", bad)
        assert status == 400 and "does not exist" in body["error"], body
        # The admin creates rooms and invites.
        created = await admin.room_create(invite=[stack.buyer.user_id])
        assert isinstance(created, RoomCreateResponse), created
        # The bot uploads a transcript (application/json) where the admin asks for it.
        moderation = await management_room(bridge, admin)
        transaction_id = stack.created[-1]["transaction_id"]
        reply = await command(
            admin, moderation, f"!market transcript {transaction_id}", bridge.config.bot_mxid
        )
        assert "final hash" in reply
        assert (await bridge.bot.memberships(room_id))[stack.buyer.user_id] == "invite"


@pytest.mark.parametrize("user", ["buyer", "admin"])
async def test_the_bot_alone_may_ask_whether_a_user_exists(
    stack: Stack, admin: AsyncClient, user: str
) -> None:
    client = admin if user == "admin" else stack.buyer
    status, body = await call(
        stack,
        client,
        "GET",
        "/_synapse/client/marketplace/user_exists",
        params={"user": admin.user_id},
    )
    assert (status, body["errcode"]) == (403, "M_FORBIDDEN"), body
