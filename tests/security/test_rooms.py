"""Rooms on a real Synapse: nothing of one room leaks into another's webhooks, notices or
transcript; parties cannot send the state events Matrix cannot undo; our namespace is ours."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from nio import RoomPutStateResponse, RoomSendResponse

from bridge.ops.local_synapse import SynapseError
from tests.conftest import UserFactory
from tests.e2e.stack import Stack, join, send, state, timeline, with_webhooks
from tests.harness import Homeserver, WebhookReceiver, eventually, random_word


async def open_room(stack: Stack) -> tuple[str, str]:
    room_id = await stack.create()
    for party in (stack.buyer, stack.seller):
        await join(party, room_id)
    await stack.transition(room_id, "/payment")
    return stack.created[-1]["transaction_id"], room_id


async def test_replies_and_edits_across_rooms_leak_nothing(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    secret = f"vault code {random_word(32)}"
    async with stack.running():
        txn_a, room_a = await open_room(stack)
        txn_b, room_b = await open_room(stack)
        in_b = await send(stack.seller, room_b, secret)
        assert isinstance(in_b, RoomSendResponse), in_b
        await eventually(
            lambda: _delivered(hooks, "message.created", room_b, event_id=in_b.event_id)
        )

        # A reply in room A to room B's message (Synapse does not look into m.in_reply_to).
        reply = await stack.buyer.room_send(
            room_a,
            "m.room.message",
            {
                "msgtype": "m.text",
                "body": "what about this?",
                "m.relates_to": {"m.in_reply_to": {"event_id": in_b.event_id}},
            },
        )
        assert isinstance(reply, RoomSendResponse), reply
        edit_content = {
            "msgtype": "m.text",
            "body": "* replaced",
            "m.new_content": {"msgtype": "m.text", "body": "replaced"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": in_b.event_id},
        }
        # Synapse refuses a relation to another room's event from its own clients; a
        # federated server need not, so the bridge must hold too: the same edit is also
        # delivered to the bridge as the homeserver would deliver it.
        edit = await stack.seller.room_send(room_a, "m.room.message", edit_content)
        edit_ids = [edit.event_id] if isinstance(edit, RoomSendResponse) else []
        injected = {
            "event_id": f"$cross-{uuid.uuid4().hex}",
            "room_id": room_a,
            "type": "m.room.message",
            "sender": stack.seller.user_id,
            "origin_server_ts": 1_700_000_000_000,
            "content": edit_content,
        }
        url = f"http://127.0.0.1:{stack.config.server.port}/_matrix/app/v1/transactions/x-{uuid.uuid4().hex}"
        headers = {
            "Authorization": f"Bearer {stack.config.appservice.hs_token.get_secret_value()}"
        }
        async with stack.session.put(url, json={"events": [injected]}, headers=headers) as r:
            assert r.status == 200
        edit_ids.append(injected["event_id"])
        # A last message in A: room A's events are handled in order, so once it is
        # notified the reply and the edits have been handled too.
        last = await send(stack.buyer, room_a, "last one")
        await eventually(
            lambda: _delivered(hooks, "message.created", room_a, event_id=last.event_id)
        )

        in_a = [d for d in hooks.delivered() if d["data"]["room_id"] == room_a]
        assert any(d["data"].get("event_id") == reply.event_id for d in in_a)
        assert secret not in json.dumps(in_a)
        assert "vault code" not in json.dumps(in_a)
        assert not [
            d
            for d in in_a
            if d["type"] == "message.edited"
            or d["data"].get("original_event_id") == in_b.event_id
            or d["data"].get("event_id") in edit_ids
        ]
        # Room B's own message is untouched: no edit reached it either.
        assert not hooks.delivered("message.edited")

        status, transcript = await stack.api.call("GET", f"/transactions/{txn_a}/transcript")
        assert status == 200
        assert secret not in json.dumps(transcript)
        status, chats = await stack.api.call("GET", f"/users/{stack.buyer_uid}/rooms")
        (chat_a,) = [c for c in chats["rooms"] if c["room_id"] == room_a]
        assert chat_a["last_message"] == "last one"
        # No notice of the bot in A repeats B's text.
        assert secret not in json.dumps(await timeline(stack.buyer, room_a))
        # And B's transcript still has the original text, unedited.
        status, transcript_b = await stack.api.call("GET", f"/transactions/{txn_b}/transcript")
        (entry,) = [e for e in transcript_b["entries"] if e["event_id"] == in_b.event_id]
        assert entry["body"] == secret
        assert not [e for e in transcript_b["entries"] if e["kind"] == "edit"]


async def _delivered(
    hooks: WebhookReceiver, type_: str, room_id: str, *, event_id: str
) -> list[dict]:
    return [
        d
        for d in hooks.delivered(type_)
        if d["data"]["room_id"] == room_id and d["data"].get("event_id") == event_id
    ]


FORBIDDEN_STATE = [
    ("m.room.tombstone", "", {"body": "moved", "replacement_room": "!elsewhere:localhost"}),
    (
        "m.room.server_acl",
        "",
        {"allow": ["*"], "deny": ["evil.example"], "allow_ip_literals": True},
    ),
    ("m.room.encryption", "", {"algorithm": "m.megolm.v1.aes-sha2"}),
    ("m.room.power_levels", "", None),  # the room's own, with the sender at 100
    ("m.room.join_rules", "", {"join_rule": "public"}),
    ("m.room.history_visibility", "", {"history_visibility": "world_readable"}),
    ("m.room.name", "", {"name": "DM me on WhatsApp"}),
    ("m.room.canonical_alias", "", {"alias": "#market_transaction_x:localhost"}),
]


async def test_parties_cannot_send_room_state(stack: Stack) -> None:
    async with stack.running():
        _, room_id = await open_room(stack)
        levels = await state(stack.buyer, room_id, "m.room.power_levels")
        name = await state(stack.buyer, room_id, "m.room.name")
        for party in (stack.buyer, stack.seller):
            for event_type, state_key, content in FORBIDDEN_STATE:
                if content is None:
                    content = {**levels, "users": {**levels["users"], party.user_id: 100}}
                response = await party.room_put_state(room_id, event_type, content, state_key)
                assert not isinstance(response, RoomPutStateResponse), (event_type, response)
                assert response.status_code == "M_FORBIDDEN", (event_type, response)
        # Nothing of it took effect.
        assert await state(stack.seller, room_id, "m.room.power_levels") == levels
        assert await state(stack.seller, room_id, "m.room.name") == name
        for event_type in ("m.room.tombstone", "m.room.server_acl", "m.room.encryption"):
            response = await stack.seller.room_get_state_event(room_id, event_type)
            assert getattr(response, "status_code", None) == "M_NOT_FOUND", (event_type, response)
        assert isinstance(await send(stack.buyer, room_id, "still here"), RoomSendResponse)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_our_namespace_is_exclusive(
    stack: Stack, make_user: UserFactory, homeserver: Homeserver, backend: str
) -> None:
    """Nobody but the bridge may hold the bot's user id or a #market_ alias (Synapse
    enforces the registration's exclusive namespaces; this holds it to ours)."""
    base = str(stack.config.homeserver.url).rstrip("/")
    user = await make_user("squatter")
    headers = {"Authorization": f"Bearer {user.access_token}"}
    async with stack.running():
        room_id = await stack.create()
        alias_localpart = f"market_transaction_{random_word(32)}"
        # Registering the bot's user id: refused to a client, and even through the
        # shared-secret admin API (the namespace is exclusive, and the bot holds it).
        async with stack.session.post(
            f"{base}/_matrix/client/v3/register",
            json={
                "username": "marketbot",
                "password": "x" * 20,
                "auth": {"type": "m.login.dummy"},
            },
        ) as r:
            assert 400 <= r.status < 500, await r.text()
        with pytest.raises(SynapseError) as refused:
            await asyncio.to_thread(homeserver.synapse.register_user, "marketbot", "y" * 24)
        assert "M_EXCLUSIVE" in str(refused.value) or "M_USER_IN_USE" in str(refused.value)
        # An ordinary user's room, and our alias claimed for it: refused.
        own = await user.room_create(name="lookalike")
        alias = f"#{alias_localpart}:localhost"
        async with stack.session.put(
            f"{base}/_matrix/client/v3/directory/room/{alias.replace('#', '%23')}",
            json={"room_id": own.room_id},
            headers=headers,
        ) as r:
            assert r.status == 400, await r.text()
            assert (await r.json())["errcode"] == "M_EXCLUSIVE"
        created = await user.room_create(alias=alias_localpart)
        assert getattr(created, "status_code", None) == "M_EXCLUSIVE", created
        # Nor can the real transaction's alias be taken over or removed.
        txn_alias = _alias_of(stack)
        async with stack.session.delete(
            f"{base}/_matrix/client/v3/directory/room/{txn_alias}", headers=headers
        ) as r:
            assert r.status in (400, 403), await r.text()
        async with stack.session.get(f"{base}/_matrix/client/v3/directory/room/{txn_alias}") as r:
            assert (await r.json())["room_id"] == room_id


def _alias_of(stack: Stack) -> str:
    from policy.rooms import RoomKind, alias_localpart

    localpart = alias_localpart(
        stack.config.appservice.alias_prefix,
        RoomKind.TRANSACTION,
        stack.created[-1]["transaction_id"],
    )
    return f"%23{localpart}:{stack.config.homeserver.domain}"
