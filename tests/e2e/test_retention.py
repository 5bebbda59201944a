"""Retention and legal holds on the hardened homeserver (our module removes the rooms), with
the bridge's clock moved: a closed deal's room exported, announced and gone for its members;
a held one untouched and its parties unerasable until released; the holds API's bad input."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nio import JoinedRoomsResponse, RoomSendResponse

from policy.transcript import verify_transcript
from tests.e2e.stack import Stack, hardened_stack, with_webhooks
from tests.e2e.test_identity import client_of, managed_deal
from tests.harness import Homeserver, WebhookReceiver, eventually, unique_id

DAY = 86_400


@pytest.fixture
async def stack(
    hardened_homeserver: Homeserver, hooks: WebhookReceiver, api_timings: dict, tmp_path: Path
) -> AsyncIterator[Stack]:
    retention = {
        "closed_transaction_days": {"completed": 1},
        "transcripts_directory": str(tmp_path / "transcripts"),
        "check_interval_seconds": 3600,  # the test drains when it moved the clock
    }
    async with hardened_stack(
        hardened_homeserver, api_timings, tmp_path, retention=retention
    ) as stack:
        stack.config = with_webhooks(stack.config, hooks.url)
        yield stack


async def test_a_closed_deals_room_is_exported_announced_and_gone_for_its_members(
    stack: Stack, hooks: WebhookReceiver
) -> None:
    async with stack.running() as bridge:
        buyer, _, txn = await managed_deal(stack)
        tid, room = txn["transaction_id"], txn["room_id"]
        status, session = await stack.api.call("POST", f"/users/{buyer}/sessions")
        assert status == 201
        client = await client_of(session)
        try:
            sent = await client.room_send(
                room, "m.room.message", {"msgtype": "m.text", "body": "Collected, thanks"}
            )
            assert isinstance(sent, RoomSendResponse), sent
            path = f"/transactions/{tid}/transcript"

            async def stored() -> bool:
                status, document = await stack.api.call("GET", path)
                return status == 200 and "Collected, thanks" in json.dumps(document)

            await eventually(stored)
            status, _ = await stack.api.call(
                "POST", f"/transactions/{tid}/close", {"outcome": "completed"}
            )
            assert status == 200
            retention = bridge.workers.retention
            assert await retention.drain() == 0  # its day has not passed
            stack.clock.advance(DAY)
            assert await retention.drain() == 1

            async def announced() -> list:
                return hooks.delivered("room.purged")

            (webhook,) = await eventually(announced)
            data = webhook["data"]
            assert data["room_id"] == room and data["transaction_id"] == tid
            document = json.loads(
                await asyncio.to_thread(
                    (stack.config.retention.transcripts_directory / data["transcript"]).read_text
                )
            )
            assert verify_transcript(document) == [] and "Collected, thanks" in json.dumps(
                document
            )
            assert document["final_hash"] == data["final_hash"]
            status, record = await stack.api.call("GET", f"/transactions/{tid}")
            assert status == 200 and record["state"] == "closed" and record["purged_at"]
            assert record["transcript_hash"] == data["final_hash"]
            status, again = await stack.api.call("GET", path)
            assert status == 200 and again["final_hash"] == data["final_hash"]
            # Gone for its members: out of it, and it cannot be joined again.
            joined = await client.joined_rooms()
            assert isinstance(joined, JoinedRoomsResponse) and room not in joined.rooms
            assert not isinstance(await client.join(room), type(joined))
            refused = await client.room_messages(room, start="")
            assert getattr(refused, "status_code", None) == "M_FORBIDDEN", refused
        finally:
            await client.close()
        rows = await bridge.db.fetchval(
            "SELECT COUNT(*) FROM inbox_events WHERE room_id = $1", room
        )
        assert rows == 0


async def test_a_held_deal_is_kept_and_its_parties_unerasable_until_released(
    stack: Stack,
) -> None:
    async with stack.running() as bridge:
        buyer, _, txn = await managed_deal(stack)
        tid = txn["transaction_id"]
        hold = f"/transactions/{tid}/hold"
        status, answer = await stack.api.call("POST", hold, {"reason": "claim 7"})
        assert status == 201 and answer["held"] and answer["holds"][0]["kind"] == "manual"
        status, answer = await stack.api.call("POST", hold, {"reason": "claim 7"})
        assert status == 200
        status, _ = await stack.api.call(
            "POST", f"/transactions/{tid}/close", {"outcome": "completed"}
        )
        assert status == 200
        stack.clock.advance(2 * DAY)
        assert await bridge.workers.retention.drain() == 0
        status, answer = await stack.api.call("POST", f"/users/{buyer}/erase")
        assert (status, answer["errcode"]) == (409, "MARKET_USER_ON_HOLD")
        assert "claim 7" in answer["error"]
        status, listed = await stack.api.call("GET", "/holds")
        assert status == 200 and tid in [h["transaction_id"] for h in listed["holds"]]
        status, answer = await stack.api.call("DELETE", hold, {"reason": "settled"})
        assert status == 200 and not answer["held"]
        assert await bridge.workers.retention.drain() == 1
        status, _ = await stack.api.call("POST", f"/users/{buyer}/erase")
        assert status == 200


async def test_bad_hold_requests_answer_4xx_and_change_nothing(stack: Stack) -> None:
    async with stack.running():
        _, _, txn = await managed_deal(stack)
        tid = txn["transaction_id"]
        unknown = unique_id("order")
        for method, body in (("POST", {"reason": "x"}), ("DELETE", None), ("GET", None)):
            status, answer = await stack.api.call(method, f"/transactions/{unknown}/hold", body)
            assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND"), (method, answer)
        status, answer = await stack.api.call("DELETE", f"/transactions/{tid}/hold")
        assert (status, answer["errcode"]) == (404, "MARKET_NOT_FOUND")
        for body in (None, {}, {"reason": ""}, {"reason": "x" * 1001}, {"reason": 5}, {"x": 1}):
            status, answer = await stack.api.call("POST", f"/transactions/{tid}/hold", body)
            assert status == 400 and answer["errcode"].startswith("MARKET_"), (body, answer)
        dispute = {
            "dispute_id": unique_id("dispute"),
            "transaction_id": tid,
            "reason": "Late",
            "opened_by": "buyer",
        }
        status, _ = await stack.api.call("POST", "/disputes", dispute)
        assert status == 201
        status, answer = await stack.api.call("DELETE", f"/transactions/{tid}/hold")
        assert (status, answer["errcode"]) == (409, "MARKET_INVALID_STATE")
        status, answer = await stack.api.call("GET", f"/transactions/{tid}/hold")
        assert status == 200 and [h["kind"] for h in answer["holds"]] == ["dispute"]
