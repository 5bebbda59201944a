"""Deals that do not stall, end to end: real Synapse, real clients, a real receiver, and the
bridge's clock moved forward (the homeserver keeps real time)."""

from __future__ import annotations

import csv
import io

from nio import RoomReadMarkersResponse

from bridge.app import Bridge
from tests.e2e.stack import Stack, join, send, timeline, with_deals, with_webhooks
from tests.e2e.test_notifications import of_type, until_delivered
from tests.harness import WebhookReceiver, eventually

MINUTE, HOUR = 60, 3600


async def open_room(stack: Stack, hooks: WebhookReceiver) -> str:
    """A paid transaction's room with both parties in it."""
    room_id = await stack.create()
    for party in (stack.buyer, stack.seller):
        await join(party, room_id)
    await stack.transition(room_id, "/payment")
    await until_delivered(hooks, "room.state_changed", room_id, 1)
    return room_id


async def queued(bridge: Bridge, type_: str, room_id: str) -> int:
    """Notifications of this type queued for the room (delivered or not)."""
    return await bridge.db.fetchval(
        "SELECT COUNT(*) FROM outbox WHERE type = $1 AND stream = $2", type_, room_id
    )


async def read_all(stack: Stack, room_id: str, event_id: str) -> None:
    response = await stack.seller.room_read_markers(room_id, event_id, event_id)
    assert isinstance(response, RoomReadMarkersResponse), response


async def test_a_message_left_unread_is_reminded_once_and_a_read_ends_the_burst(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_deals(
        with_webhooks(stack.config, hooks.url), {"unread_after": 10 * MINUTE}, {}
    )
    async with stack.running() as bridge:
        room_id = await open_room(stack, hooks)
        first = await send(stack.buyer, room_id, "Is the bike still available?")
        await send(stack.buyer, room_id, "I could pick it up on Saturday.")
        await until_delivered(hooks, "message.created", room_id, 2)

        stack.clock.advance(9 * MINUTE)  # not yet
        await bridge.workers.follow_ups.drain()
        assert await queued(bridge, "message.unread_reminder", room_id) == 0

        stack.clock.advance(2 * MINUTE)
        (reminder,) = await until_delivered(hooks, "message.unread_reminder", room_id, 1)
        data = reminder["data"]
        assert data["recipient"] == {
            "user_id": stack.seller_uid,
            "matrix_id": stack.seller.user_id,
            "role": "seller",
        }
        assert data["unread"] == 2
        assert data["latest"]["preview"] == "I could pick it up on Saturday."
        assert data["latest"]["sender"]["user_id"] == stack.buyer_uid
        assert data["links"]["matrix_to"].startswith("https://matrix.to/#/")
        assert data["reminder"] == 1

        # The same burst goes on unread: no second reminder (repeat_after is off).
        await send(stack.buyer, room_id, "Hello?")
        await until_delivered(hooks, "message.created", room_id, 3)
        stack.clock.advance(11 * MINUTE)
        await bridge.workers.follow_ups.drain()
        assert await queued(bridge, "message.unread_reminder", room_id) == 1

        # A read ends the burst; the next message starts a new one, reminded in its turn.
        await read_all(stack, room_id, first.event_id)  # an early message: still unread
        latest = await send(stack.buyer, room_id, "Still there?")
        await until_delivered(hooks, "message.created", room_id, 4)
        await read_all(stack, room_id, latest.event_id)
        await until_delivered(hooks, "message.read", room_id, 2)
        await send(stack.buyer, room_id, "One more question")
        await until_delivered(hooks, "message.created", room_id, 5)
        stack.clock.advance(11 * MINUTE)
        await until_delivered(hooks, "message.unread_reminder", room_id, 2)
        second = of_type(hooks, "message.unread_reminder", room_id)[-1]["data"]
        assert (second["unread"], second["latest"]["preview"]) == (1, "One more question")


async def test_a_bridge_away_across_the_due_time_reminds_once_on_start(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_deals(
        with_webhooks(stack.config, hooks.url), {"unread_after": 10 * MINUTE}, {}
    )
    async with stack.running():
        room_id = await open_room(stack, hooks)
        await send(stack.buyer, room_id, "Is the bike still available?")
        await until_delivered(hooks, "message.created", room_id, 1)
    stack.clock.advance(11 * MINUTE)  # due while no bridge runs
    async with stack.running() as bridge:
        await until_delivered(hooks, "message.unread_reminder", room_id, 1)
        await bridge.workers.follow_ups.drain()
        assert await queued(bridge, "message.unread_reminder", room_id) == 1


async def test_a_message_read_while_the_bridge_is_away_is_never_reminded(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_deals(
        with_webhooks(stack.config, hooks.url), {"unread_after": 10 * MINUTE}, {}
    )
    async with stack.running():
        room_id = await open_room(stack, hooks)
        latest = await send(stack.buyer, room_id, "Is the bike still available?")
        await until_delivered(hooks, "message.created", room_id, 1)
    # Read while no bridge runs: Synapse drops the receipt it cannot push, and the bridge
    # asks for the room's receipts before reminding.
    await read_all(stack, room_id, latest.event_id)
    stack.clock.advance(11 * MINUTE)
    async with stack.running() as bridge:
        await bridge.workers.follow_ups.drain()
        await until_delivered(hooks, "message.read", room_id, 1)
        await bridge.workers.follow_ups.drain()
        assert await queued(bridge, "message.unread_reminder", room_id) == 0


async def test_an_unanswered_buyer_gets_a_nudge_then_an_escalation_then_a_dispute(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_deals(
        with_webhooks(stack.config, hooks.url),
        {"unread_after": None},
        {"nudge_after": 12 * HOUR, "escalate_after": 24 * HOUR, "auto_dispute": True},
    )
    async with stack.running() as bridge:
        room_id = await open_room(stack, hooks)
        question = await send(stack.buyer, room_id, "Has it shipped?")
        await until_delivered(hooks, "message.created", room_id, 1)

        stack.clock.advance(12 * HOUR + MINUTE)
        (nudge,) = await until_delivered(hooks, "deal.nudge", room_id, 1)
        assert nudge["data"]["event_id"] == question.event_id
        assert nudge["data"]["seller"]["user_id"] == stack.seller_uid
        assert nudge["data"]["waited_seconds"] >= 12 * HOUR

        async def notice() -> list[dict]:
            return [
                e
                for e in await timeline(stack.seller, room_id)
                if e["content"].get("msgtype") == "m.notice"
                and stack.seller.user_id in e["content"].get("body", "")
                and "waiting" in e["content"].get("body", "")
            ]

        (posted,) = await eventually(notice)
        assert posted["sender"] == bridge.config.bot_mxid
        assert "12 h" in posted["content"]["body"]

        stack.clock.advance(12 * HOUR)
        (due,) = await until_delivered(hooks, "deal.escalation_due", room_id, 1)
        assert due["data"]["auto_dispute"] is True
        dispute_id = due["data"]["dispute_id"]
        # The escalation names the dispute it opens; dispute.opened follows once it is open.
        (opened,) = await until_delivered(hooks, "dispute.opened", room_id, 1)
        assert opened["data"]["dispute_id"] == dispute_id
        status, dispute = await stack.api.call("GET", f"/disputes/{dispute_id}")
        assert status == 200, dispute
        assert (dispute["reason"], dispute["opened_by"], dispute["state"]) == (
            "no response",
            "marketplace",
            "open",
        )
        # Each step once.
        stack.clock.advance(24 * HOUR)
        await bridge.workers.follow_ups.drain()
        for type_ in ("deal.nudge", "deal.escalation_due", "dispute.opened"):
            assert await queued(bridge, type_, room_id) == 1, type_
        status, audit = await stack.api.call("GET", f"/audit?room_id={room_id}")
        assert status == 200, audit
        actions = [entry["action"] for entry in audit["entries"]]
        assert actions.count("deal.nudge") == actions.count("deal.escalation_due") == 1


async def test_responsiveness_counts_the_sellers_first_replies(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    async with stack.running():
        room_id = await open_room(stack, hooks)
        await send(stack.buyer, room_id, "Is the bike still available?")
        await send(stack.buyer, room_id, "And the helmet?")  # the same exchange
        await send(stack.seller, room_id, "Both are.")
        await send(stack.seller, room_id, "Come any day.")  # not a second reply
        await until_delivered(hooks, "message.created", room_id, 4)

        status, body = await stack.api.call("GET", f"/users/{stack.seller_uid}/responsiveness")
        assert status == 200, body
        seller = body["as_seller"]
        assert (seller["exchanges"], seller["answered"], seller["answered_within_24h"]) == (
            1,
            1,
            1,
        )
        assert seller["reply_rate_24h"] == 1.0
        assert 0 < seller["median_first_response_seconds"] < 60
        # The seller's answer started an exchange waiting for the buyer, still pending.
        buyer = (await stack.api.call("GET", f"/users/{stack.buyer_uid}/responsiveness"))[1]
        assert (buyer["as_buyer"]["exchanges"], buyer["as_buyer"]["pending"]) == (1, 1)
        assert buyer["as_buyer"]["reply_rate_24h"] is None

        status, page = await stack.api.call("GET", "/responsiveness?limit=1000")
        assert status == 200, page
        (listed,) = [s for s in page["sellers"] if s["user_id"] == stack.seller_uid]
        assert listed["answered"] == 1
        assert all(s["user_id"] != stack.buyer_uid for s in page["sellers"])
        api = stack.api
        async with stack.session.get(
            f"{api.base_url}/api/v1/responsiveness?format=csv&limit=1000",
            headers={"Authorization": f"Bearer {api.token}"},
        ) as response:
            assert response.status == 200
            assert response.content_type == "text/csv"
            rows = list(csv.DictReader(io.StringIO(await response.text())))
        (row,) = [r for r in rows if r["user_id"] == stack.seller_uid]
        assert (row["exchanges"], row["answered"], row["reply_rate_24h"]) == ("1", "1", "1.0")

        for path, errcode in (
            ("/users/nobody-here/responsiveness", "MARKET_NOT_FOUND"),
            (f"/users/{stack.seller_uid}/responsiveness?since=yesterday", "MARKET_INVALID_PARAM"),
            ("/responsiveness?since=2999-01-01", "MARKET_INVALID_PARAM"),
            ("/responsiveness?format=xml", "MARKET_INVALID_PARAM"),
            ("/responsiveness?limit=0", "MARKET_INVALID_PARAM"),
            ("/responsiveness?after=no%20id", "MARKET_INVALID_PARAM"),
        ):
            status, body = await stack.api.call("GET", path)
            assert (status, body["errcode"]) == (
                404 if errcode == "MARKET_NOT_FOUND" else 400,
                errcode,
            ), path
