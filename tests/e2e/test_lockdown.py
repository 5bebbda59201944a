"""No way around the lock: the hardened homeserver (our module and settings, as in make run)
refuses side channels, impostors, contact details before delivery, and disguised uploads."""

from __future__ import annotations

import io
import json
import struct
import zipfile
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
    leaks_phone,
    random_secret,
    unique_id,
)


@pytest.fixture(scope="session")
def admin_account(hardened_homeserver: Homeserver) -> dict[str, Any]:
    """The admin the hardened homeserver's module was configured with, registered once."""
    return hardened_homeserver.synapse.register_user(HARDENED_ADMIN, random_secret())


@pytest.fixture
async def users(hardened_homeserver: Homeserver) -> AsyncIterator[UserFactory]:
    async with user_factory(hardened_homeserver) as make:
        yield lambda role: make(unique_id(role))


@pytest.fixture
async def admin(
    hardened_homeserver: Homeserver, admin_account: dict
) -> AsyncIterator[AsyncClient]:
    client = AsyncClient(hardened_homeserver.client_url, admin_account["user_id"])
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
    url = f"{client.homeserver.rstrip('/')}/{path.lstrip('/')}"  # the gateway, for parties
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
        # Nor a way to learn which orders exist by asking for a room with their alias.
        for name in ("market_transaction_order-1", "market_transaction_no-such-order"):
            status, body = await call(
                stack,
                outsider,
                "POST",
                "/_matrix/client/v3/createRoom",
                {"room_alias_name": name},
            )
            assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (name, body)


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

        # The directory is updated in the background: wait until the seller shows. (It stayed
        # empty while a fresh Synapse ran its schema updates one a second; LocalSynapse now runs
        # them back to back.)
        await eventually(lambda: found(stack.seller), within=30)
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


async def test_contact_details_are_masked_before_delivery(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        masked = await send(stack.buyer, room_id, "call me: +44 7911 123456, thanks")
        assert isinstance(masked, RoomSendResponse), masked  # the deal goes on
        html = {
            "msgtype": "m.text",
            "body": "my number",
            "format": "org.matrix.custom.html",
            "formatted_body": "my number <b>07911 123456</b>",
        }
        only_html = await stack.buyer.room_send(room_id, "m.room.message", html)
        assert isinstance(only_html, RoomSendResponse), only_html

        # The seller sees the messages with the details hidden, never the details.
        async def seen() -> dict[str, dict]:
            found = {e["event_id"]: e["content"] for e in await timeline(stack.seller, room_id)}
            assert masked.event_id in found and only_html.event_id in found
            return found

        shown = await eventually(seen)
        assert shown[masked.event_id]["body"] == "call me: [contact details hidden], thanks"
        assert "formatted_body" not in shown[only_html.event_id]
        assert "7911" not in json.dumps(shown)

        # The marketplace hears of a violation and the bot redacts nothing; the admins keep
        # the original in the audit trail.
        async def violations() -> list[dict]:
            return hooks.delivered("policy.violation")

        (violation, *_) = await eventually(violations)
        assert "mask" in violation["data"]["actions"]
        assert "redact" not in violation["data"]["actions"]
        assert not any(leaks_phone(d) for d in hooks.delivered())

        async def original_kept() -> list[dict]:
            status, page = await stack.api.call("GET", "/audit", params={"room_id": room_id})
            assert status == 200, page
            return [e for e in page["entries"] if e["action"] == "message.masked"]

        kept = await eventually(original_kept)
        assert any("+44 7911 123456" in e["detail"] for e in kept)
        # A client cannot mark its own message as masked.
        forged = {"msgtype": "m.text", "body": "ok", "org.marketplace.masked": {"id": "x"}}
        sent = await stack.buyer.room_send(room_id, "m.room.message", forged)
        assert isinstance(sent, RoomSendResponse), sent

        async def forged_seen() -> dict:
            found = {e["event_id"]: e["content"] for e in await timeline(stack.seller, room_id)}
            assert sent.event_id in found
            return found[sent.event_id]

        assert "org.marketplace.masked" not in await eventually(forged_seen)


async def test_every_text_a_client_renders_is_masked(stack: Stack) -> None:
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        contents = [
            # New content without an edit relation: clients render it.
            {
                "msgtype": "m.text",
                "body": "hi",
                "m.new_content": {"msgtype": "m.text", "body": "07911 123456"},
            },
            # Quote-like lines beside a relation that is no reply (to the message above).
            {
                "msgtype": "m.text",
                "body": "> 07911 123456\nok",
                "m.relates_to": {"rel_type": "m.thread", "event_id": "<first>"},
            },
            # A file name and a caption.
            {
                "msgtype": "m.file",
                "body": "the invoice, or mail bob@gmail.com",
                "filename": "call-07911-123456.pdf",
                "url": "mxc://localhost/x",
                "info": {"mimetype": "application/pdf"},
            },
            # A number split across two messages.
            {"msgtype": "m.text", "body": "my number starts 07911"},
            {"msgtype": "m.text", "body": "then 123 456"},
        ]
        sent: list[str] = []
        for content in contents:
            if "m.relates_to" in content:
                content["m.relates_to"]["event_id"] = sent[0]
            response = await stack.buyer.room_send(room_id, "m.room.message", content)
            assert isinstance(response, RoomSendResponse), response
            sent.append(response.event_id)

        async def seen() -> list[dict]:
            found = {e["event_id"]: e["content"] for e in await timeline(stack.seller, room_id)}
            assert all(event_id in found for event_id in sent)
            return [found[event_id] for event_id in sent]

        shown = await eventually(seen)
        for content in shown:
            text = json.dumps(content)
            assert "123456" not in text and "123 456" not in text and "gmail" not in text
        assert all("org.marketplace.masked" in content for content in shown[:3] + shown[4:])
        assert shown[3]["body"] == "my number starts 07911"  # delivered before its end came


async def test_an_event_the_rules_cannot_read_is_refused(stack: Stack) -> None:
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        nested: Any = "07911 123456"
        for _ in range(40):
            nested = {"x": nested}
        # Shapes Synapse itself lets through (it refuses a body that is not a text).
        for content in (
            {"msgtype": "m.text", "body": "ok", "m.new_content": "07911 123456"},
            {"msgtype": "m.text", "body": "ok", "formatted_body": ["07911 123456"]},
            {"msgtype": "m.text", "body": "ok", "deep": nested},
        ):
            refused = await stack.buyer.room_send(room_id, "m.room.message", content)
            assert not isinstance(refused, RoomSendResponse), refused
            assert refused.status_code == "M_FORBIDDEN"
            assert "7911" not in refused.message


async def test_other_broken_rules_are_refused_before_delivery(stack: Stack) -> None:
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        exe = {
            "msgtype": "m.file",
            "body": "setup.exe",
            "url": "mxc://localhost/x",
            "info": {"mimetype": "application/x-msdownload"},
        }
        refused = await stack.buyer.room_send(room_id, "m.room.message", exe)
        assert not isinstance(refused, RoomSendResponse), refused
        assert refused.status_code == "M_FORBIDDEN"
        # The rule's own words, nothing the sender chose (not the type they declared).
        assert "x-msdownload" not in refused.message and "type of file" in refused.message


async def test_uploads_are_judged_whole_by_their_bytes(stack: Stack, admin: AsyncClient) -> None:
    executable = b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 256
    status, body = await upload(stack, stack.buyer, executable, "image/png")
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    status, body = await upload(stack, stack.buyer, png(), "image/png")
    assert status == 200 and body["content_uri"].startswith("mxc://"), body
    # An archive behind an image, text disguised as anything: refused.
    status, body = await upload(stack, stack.buyer, png() + zip_file(), "image/png")
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    status, body = await upload(stack, stack.buyer, b'{"phone": "07911 123456"}', "image/png")
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    # The name and the declared type come back to whoever downloads the file.
    status, body = await call(
        stack,
        stack.buyer,
        "POST",
        "/_matrix/media/v3/upload",
        data=png(),
        headers={"Content-Type": "image/png"},
        params={"filename": f"call {PHONE}.png"},
    )
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    # Parties are limited to policy.max_media_bytes (1 MiB on this homeserver); admins are
    # not, and may upload what parties may not (the bot's transcripts are JSON).
    big = png() + b"\x00" * (1024 * 1024)
    status, body = await upload(stack, stack.buyer, big, "image/png")
    assert (status, body.get("errcode")) == (413, "M_TOO_LARGE"), body
    status, body = await upload(stack, admin, b'{"entries": []}', "application/json")
    assert status == 200, body


def zip_file() -> bytes:
    """A real ZIP archive holding one small file."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("contact.txt", "07911 123456")
    return buffer.getvalue()


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


# --- the channels Synapse never shows the bridge: the client gateway, settings, the module ---

PHONE = "call me on 07911 123456"


async def open_room(stack: Stack, *, paid: bool) -> str:
    room_id = await stack.create()
    for party in (stack.buyer, stack.seller):
        await join(party, room_id)
    if paid:
        await stack.transition(room_id, "/payment")
    return room_id


async def test_to_device_messages_go_only_to_ones_own_devices(stack: Stack) -> None:
    to_seller = {"messages": {stack.seller.user_id: {"*": {"body": PHONE}}}}
    status, body = await call(
        stack, stack.buyer, "PUT", "/_matrix/client/v3/sendToDevice/m.custom/t1", to_seller
    )
    assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), body
    mixed = {
        "messages": {
            stack.buyer.user_id: {"*": {"body": "hi"}},
            stack.seller.user_id: {"*": {"body": PHONE}},
        }
    }
    status, body = await call(
        stack, stack.buyer, "PUT", "/_matrix/client/v3/sendToDevice/m.custom/t2", mixed
    )
    assert status == 403, body
    own = {"messages": {stack.buyer.user_id: {"*": {"body": "to my other phone"}}}}
    status, body = await call(
        stack, stack.buyer, "PUT", "/_matrix/client/v3/sendToDevice/m.custom/t3", own
    )
    assert status == 200, body
    # Every spelling Synapse routes to the same endpoint is guarded alike.
    for path in (
        "/_matrix/client/v3/sendToDevice//t4",  # an empty type
        "/_matrix/client/v3/sendToDevice/m.x%2Fy/t5",  # a slash inside the type
        "/_matrix/client/v3/sendToDevice/m.custom/",  # an empty transaction id
        "/_matrix/client/r0/sendToDevice/m.custom/t6",
    ):
        status, body = await call(stack, stack.buyer, "PUT", path, to_seller)
        assert status == 403, (path, body)


async def test_profile_fields_are_the_marketplaces(stack: Stack) -> None:
    me = stack.buyer.user_id
    for method, field, body in [
        ("PUT", "us.example.phone", {"us.example.phone": PHONE}),
        ("PUT", "m.tz", {"m.tz": PHONE}),
        ("DELETE", "m.tz", None),
        ("PUT", "displayname", {"displayname": PHONE}),
    ]:
        status, answer = await call(
            stack, stack.buyer, method, f"/_matrix/client/v3/profile/{me}/{field}", body
        )
        assert (status, answer.get("errcode")) == (403, "M_FORBIDDEN"), (field, answer)


async def test_a_partys_own_membership_carries_no_reason_or_extra_keys(stack: Stack) -> None:
    async with stack.running():
        room_id = await open_room(stack, paid=False)
        path = f"/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{stack.buyer.user_id}"
        sneaky = {"membership": "join", "reason": PHONE, "note": PHONE}
        status, body = await call(stack, stack.buyer, "PUT", path, sneaky)
        assert status == 200, body
        status, member = await call(stack, stack.seller, "GET", path)
        assert status == 200 and member["membership"] == "join", member
        assert "7911" not in json.dumps(member)
        # Leaving with a reason: the leave stays, the reason goes.
        left = f"/_matrix/client/v3/rooms/{room_id}/leave"
        status, body = await call(stack, stack.buyer, "POST", left, {"reason": PHONE})
        assert status == 200, body
        status, member = await call(stack, stack.seller, "GET", path)
        assert member["membership"] == "leave" and "7911" not in json.dumps(member)


async def test_nobody_types_where_they_cannot_post(stack: Stack) -> None:
    async with stack.running():
        room_id = await open_room(stack, paid=False)
        path = f"/_matrix/client/v3/rooms/{room_id}/typing/{stack.buyer.user_id}"
        for typing in (True, 1, "yes"):  # Synapse takes any true value as typing
            status, body = await call(stack, stack.buyer, "PUT", path, {"typing": typing})
            assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), (typing, body)
        assert (await call(stack, stack.buyer, "PUT", path, {"typing": False}))[0] == 200
        await stack.transition(room_id, "/payment")

        async def may_type() -> bool:  # the gateway reads the room's power levels afresh
            status, _ = await call(stack, stack.buyer, "PUT", path, {"typing": True})
            return status == 200

        await eventually(may_type)


async def test_a_partys_keys_and_device_names_are_its_own(stack: Stack) -> None:
    """Every part of a device's keys is chosen by its client (ids, names, key values, extra
    fields): another party reads none of it, through /keys/query or /keys/claim."""
    buyer = stack.buyer
    keys = {
        "device_keys": {
            "user_id": buyer.user_id,
            "device_id": buyer.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": {f"ed25519:{buyer.device_id}": "K" * 43},
            "signatures": {},
            "note": f"whatsapp {PHONE}",
        },
        "one_time_keys": {
            "signed_curve25519:07911123456": {
                "key": f"whatsapp {PHONE}",
                "signatures": {buyer.user_id: {f"ed25519:{buyer.device_id}": "S" * 86}},
            }
        },
    }
    status, body = await call(stack, buyer, "POST", "/_matrix/client/v3/keys/upload", keys)
    assert status == 200, body
    device = f"/_matrix/client/v3/devices/{buyer.device_id}"
    status, body = await call(stack, buyer, "PUT", device, {"display_name": PHONE})
    assert status == 200, body
    query = {"device_keys": {buyer.user_id: []}}
    for path, request in (
        ("/_matrix/client/v3/keys/query", query),
        ("/_matrix/client/r0/keys/query", query),
        (
            "/_matrix/client/v3/keys/claim",
            {"one_time_keys": {buyer.user_id: {buyer.device_id: "signed_curve25519"}}},
        ),
    ):
        status, theirs = await call(stack, stack.seller, "POST", path, request)
        assert status == 200, theirs
        assert "7911" not in json.dumps(theirs) and "whatsapp" not in json.dumps(theirs)
    status, mine = await call(stack, buyer, "POST", "/_matrix/client/v3/keys/query", query)
    assert mine["device_keys"][buyer.user_id][buyer.device_id]["unsigned"] == {
        "device_display_name": PHONE
    }


async def test_our_rooms_aliases_are_known_to_their_members_only(
    stack: Stack, users: UserFactory
) -> None:
    outsider: AsyncClient = await users("outsider")
    async with stack.running():
        room_id = await open_room(stack, paid=False)
        order = stack.created[-1]["transaction_id"]
        alias = f"%23{stack.config.appservice.alias_prefix}transaction_{order}:localhost"
        unknown = f"%23{stack.config.appservice.alias_prefix}transaction_nope-1:localhost"
        for path in (
            f"/_matrix/client/v3/directory/room/{alias}",
            f"/_matrix/client/v3/directory/room/{unknown}",
        ):
            status, body = await call(stack, outsider, "GET", path)
            # An existing order answers exactly as one that does not exist.
            assert (status, body) == (
                404,
                {"errcode": "M_NOT_FOUND", "error": "Room alias not found"},
            ), body
        status, body = await call(stack, outsider, "POST", f"/_matrix/client/v3/join/{alias}", {})
        assert (status, body.get("errcode")) == (404, "M_NOT_FOUND"), body
        status, body = await call(
            stack, stack.buyer, "GET", f"/_matrix/client/v3/directory/room/{alias}"
        )
        assert status == 200 and body["room_id"] == room_id, body


async def test_presence_carries_no_status_message(stack: Stack) -> None:
    async with stack.running():
        await open_room(stack, paid=True)
        path = f"/_matrix/client/v3/presence/{stack.buyer.user_id}/status"
        await call(stack, stack.buyer, "PUT", path, {"presence": "online", "status_msg": PHONE})
        status, body = await call(stack, stack.seller, "GET", path)
        assert "7911" not in json.dumps(body), (status, body)
        status, synced = await call(stack, stack.seller, "GET", "/_matrix/client/v3/sync")
        assert status == 200 and "7911" not in json.dumps(synced)
