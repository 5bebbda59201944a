"""Disputes end to end: a room with the admins, the transaction room frozen as evidence."""

from __future__ import annotations

from nio import JoinError, RoomSendResponse

from tests.conftest import UserFactory
from tests.e2e.stack import (
    Stack,
    assert_refused,
    join,
    send,
    state,
    timeline,
    with_admin,
    with_webhooks,
)
from tests.harness import WebhookReceiver, eventually, unique_id


def dispute_body(stack: Stack, **changes: object) -> dict:
    return {
        "dispute_id": unique_id("dispute"),
        "transaction_id": stack.created[-1]["transaction_id"],
        "reason": "The bike arrived with a bent wheel.",
        "opened_by": "buyer",
        **changes,
    }


async def test_a_dispute_brings_the_admins_in_and_freezes_the_transaction_room(
    stack: Stack, hooks: WebhookReceiver, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    outsider = await make_user("outsider")
    stack.config = with_admin(with_webhooks(stack.config, hooks.url), admin.user_id)
    async with stack.running():
        room_id = await stack.create()
        for party in (stack.buyer, stack.seller):
            await join(party, room_id)
        await stack.transition(room_id, "/payment")
        evidence = await send(stack.seller, room_id, "I shipped it perfectly fine")
        assert isinstance(evidence, RoomSendResponse)

        body = dispute_body(stack)
        status, dispute = await stack.api.call("POST", "/disputes", body)
        assert status == 201, dispute
        assert (dispute["state"], dispute["access"]) == ("open", "open")
        dispute_room = dispute["room_id"]
        status, again = await stack.api.call("POST", "/disputes", body)
        assert (status, again["room_id"]) == (200, dispute_room)

        # The admin was invited to both rooms and reads the transaction's history.
        await join(admin, room_id)
        await join(admin, dispute_room)
        history = [e.get("event_id") for e in await timeline(admin, room_id)]
        assert evidence.event_id in history

        # Parties are frozen out of the transaction room, the admin is not; they all talk in
        # the dispute room; an outsider cannot get in.
        for party in (stack.buyer, stack.seller):
            await assert_refused(party, room_id)
            await join(party, dispute_room)
        assert isinstance(await send(admin, room_id, "noted"), RoomSendResponse)
        said = await send(stack.buyer, dispute_room, "here are the photos")
        assert isinstance(said, RoomSendResponse)
        joined = await outsider.join(dispute_room)
        assert isinstance(joined, JoinError) and joined.status_code == "M_FORBIDDEN"

        # What the parties' clients show: each room's name says its state; the dispute room's
        # first notice says why it is not end-to-end encrypted.
        title = "Vintage <bike> & helmet"
        name = await state(stack.buyer, room_id, "m.room.name")
        assert name["name"] == f"{title} · frozen (dispute open)"
        name = await state(stack.buyer, dispute_room, "m.room.name")
        assert name["name"] == f"Dispute: {title} · open"
        opening = next(
            e["content"]["body"]
            for e in reversed(await timeline(stack.buyer, dispute_room))
            if e["type"] == "m.room.message" and e["content"].get("msgtype") == "m.notice"
        )
        assert opening.startswith("A dispute about") and "not end-to-end encrypted" in opening

        status, answer = await stack.api.call("GET", f"/transactions/{body['transaction_id']}")
        assert answer["access"] == "frozen"
        for suffix, payload in (("/payment", None), ("/close", {"outcome": "refunded"})):
            status, answer = await stack.api.call(
                "POST", f"/transactions/{body['transaction_id']}{suffix}", payload
            )
            assert (status, answer["errcode"]) == (409, "MARKET_INVALID_STATE")
        other = dispute_body(stack)
        status, answer = await stack.api.call("POST", "/disputes", other)
        assert (status, answer["errcode"]) == (409, "MARKET_INVALID_STATE")
        status, answer = await stack.api.call(
            "POST", "/disputes", {**body, "reason": "another reason"}
        )
        assert (status, answer["errcode"], answer["fields"]) == (
            409,
            "MARKET_CONFLICT",
            ["reason"],
        )

        async def dispute_message() -> list[dict]:
            return [
                b
                for b in hooks.delivered("message.created")
                if b["data"]["event_id"] == said.event_id
            ]

        (created,) = await eventually(dispute_message)
        status, chats = await stack.api.call("GET", f"/users/{stack.seller_uid}/rooms")
        assert status == 200
        assert [(c["kind"], c["room_id"], c["state"], c["access"]) for c in chats["rooms"]] == [
            ("dispute", dispute_room, "open", "open"),
            ("transaction", room_id, "paid", "frozen"),
        ]
        assert chats["rooms"][0]["dispute_id"] == body["dispute_id"]
        assert chats["rooms"][0]["unread"] == 1  # the buyer's photos
        assert chats["rooms"][0]["last_message"] == "here are the photos"
        assert (created["data"]["room_kind"], created["data"]["dispute_id"]) == (
            "dispute",
            body["dispute_id"],
        )
        assert {"role": "admin", "matrix_id": admin.user_id, "user_id": None} in created["data"][
            "recipients"
        ]

        path = f"/disputes/{body['dispute_id']}/resolve"
        status, answer = await stack.api.call("POST", path, {"decision": "split_it"})
        assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
        status, resolved = await stack.api.call(
            "POST", path, {"decision": "refund_buyer", "note": "Photos show damage."}
        )
        assert status == 200, resolved
        assert (resolved["state"], resolved["access"], resolved["source"]) == (
            "resolved",
            "archived",
            "api",
        )
        status, again = await stack.api.call("POST", path, {"decision": "refund_buyer"})
        assert (status, again["decision"]) == (200, "refund_buyer")
        status, answer = await stack.api.call("POST", path, {"decision": "no_action"})
        assert (status, answer["errcode"]) == (409, "MARKET_INVALID_STATE")

        # The dispute room is an archive now; the transaction room is open again.
        await assert_refused(stack.buyer, dispute_room)
        assert isinstance(await send(stack.buyer, room_id, "thanks"), RoomSendResponse)
        name = await state(stack.buyer, dispute_room, "m.room.name")
        assert name["name"] == f"Dispute: {title} · resolved"
        assert (await state(stack.buyer, room_id, "m.room.name"))["name"] == f"{title} · open"

        async def dispute_events() -> list[str]:
            types = [b["type"] for b in hooks.delivered() if b["type"].startswith("dispute.")]
            return types if len(types) == 2 else []

        assert await eventually(dispute_events) == ["dispute.opened", "dispute.resolved"]
        (closing,) = hooks.delivered("dispute.resolved")
        assert closing["data"] | {"dispute_id": body["dispute_id"]} == closing["data"]
        assert (closing["data"]["decision"], closing["data"]["resolved_by"]) == (
            "refund_buyer",
            "marketplace",
        )


async def test_a_dispute_needs_a_paid_transaction(stack: Stack) -> None:
    async with stack.running():
        await stack.create()
        status, answer = await stack.api.call("POST", "/disputes", dispute_body(stack))
        assert (status, answer["errcode"]) == (409, "MARKET_INVALID_STATE")
        status, answer = await stack.api.call(
            "POST", "/disputes", dispute_body(stack, transaction_id="no-such-transaction")
        )
        assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")
        status, answer = await stack.api.call(
            "POST", "/disputes", dispute_body(stack, opened_by="admin")
        )
        assert (status, answer["errcode"]) == (400, "MARKET_INVALID_PARAM")
        status, answer = await stack.api.call("GET", "/disputes/unknown")
        assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")
