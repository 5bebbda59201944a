"""The policy bot on a real Synapse: rooms held to their plans, content rules enforced,
every action audited, transcripts that show tampering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from aiohttp import ClientSession
from nio import AsyncClient, RoomSendResponse

from policy.rooms import TRANSACTION_TOPICS
from policy.states import Access
from policy.transcript import verify_transcript
from tests.conftest import UserFactory
from tests.e2e.stack import (
    Stack,
    appservice_bot,
    join,
    send,
    state,
    timeline,
    with_admin,
    with_policy,
    with_webhooks,
)
from tests.e2e.test_moderation import command, management_room
from tests.harness import WebhookReceiver, eventually, leaks_phone, unique_id

MUTE_SECONDS = 600  # longer than any test step; the flood test moves the clock past it


async def open_room(stack: Stack) -> tuple[str, str]:
    """A paid transaction whose room both parties joined: (transaction id, room id)."""
    room_id = await stack.create()
    for party in (stack.buyer, stack.seller):
        await join(party, room_id)
    await stack.transition(room_id, "/payment")
    return stack.created[-1]["transaction_id"], room_id


async def audit(stack: Stack, **filters: str) -> list[dict]:
    status, page = await stack.api.call("GET", "/audit", params={**filters, "limit": "1000"})
    assert status == 200, page
    return page["entries"]


async def audited(stack: Stack, action: str, subject: str, **filters: str) -> dict:
    """The audit entry of ``action`` on ``subject``, once it is there."""

    async def find() -> dict | None:
        entries = await audit(stack, **filters)
        found = [e for e in entries if e["action"] == action and e["subject"] == subject]
        return found[0] if found else None

    return await eventually(find)


async def delivered(hooks: WebhookReceiver, type_: str, event_id: str | None = None) -> list:
    """The notifications of a type (about one event) delivered so far; [] keeps waiting."""
    found = hooks.delivered(type_)
    return [d for d in found if event_id is None or d["data"].get("event_id") == event_id]


async def redacted(client: AsyncClient, room_id: str, event_id: str) -> bool:
    for event in await timeline(client, room_id):
        if event["event_id"] == event_id:
            return "redacted_because" in event.get("unsigned", {}) and not event["content"]
    return False


async def test_an_outsider_who_gets_in_is_removed(stack: Stack, make_user: UserFactory) -> None:
    outsider = await make_user("outsider")
    async with stack.running() as bridge, ClientSession() as session:
        transaction_id, room_id = await open_room(stack)
        # Invited with the appservice token directly, behind the bridge's back, then joining.
        await appservice_bot(stack.config, session).invite(room_id, outsider.user_id)
        await join(outsider, room_id)

        async def removed() -> bool:
            memberships = await bridge.bot.memberships(room_id)
            return memberships[outsider.user_id] == "leave"

        await eventually(removed)
        entry = await audited(stack, "member.removed", outsider.user_id, room_id=room_id)
        assert entry["actor"] == bridge.config.bot_mxid
        assert entry["transaction_id"] == transaction_id
        assert entry["reason"] == "not a party or an admin of this room"
        # The parties stay.
        memberships = await bridge.bot.memberships(room_id)
        assert memberships[stack.buyer.user_id] == memberships[stack.seller.user_id] == "join"


async def test_a_stray_invite_is_revoked_by_the_scheduled_repair(
    stack: Stack, make_user: UserFactory
) -> None:
    stranger = await make_user("stranger")
    stack.config = with_policy(stack.config, repair_interval_seconds=1)
    async with stack.running() as bridge, ClientSession() as session:
        _, room_id = await open_room(stack)
        await appservice_bot(stack.config, session).invite(room_id, stranger.user_id)
        # An invite alone shows nothing of the history; the next scheduled round revokes it.

        async def revoked() -> bool:
            return (await bridge.bot.memberships(room_id))[stranger.user_id] == "leave"

        await eventually(revoked)
        entry = await audited(stack, "member.removed", stranger.user_id, room_id=room_id)
        assert entry["detail"] == "was invite"


async def test_drift_is_repaired_live_and_on_start(stack: Stack) -> None:
    async with stack.running(), ClientSession() as session:
        transaction_id, room_id = await open_room(stack)
        tamper = appservice_bot(stack.config, session)
        # Live: the bot's token gives the buyer power; the buyer uses it to change the topic.
        levels = await tamper.get_state(room_id, "m.room.power_levels")
        await tamper.send_state(
            room_id, "m.room.power_levels", {**levels, "users": {stack.buyer.user_id: 100}}
        )
        topic = await stack.buyer.room_put_state(room_id, "m.room.topic", {"topic": "DM me"})
        assert not hasattr(topic, "status_code"), topic

        async def put_back() -> bool:
            levels = await state(stack.seller, room_id, "m.room.power_levels")
            topic = await state(stack.seller, room_id, "m.room.topic")
            return levels["users"] == {} and topic["topic"] == TRANSACTION_TOPICS[Access.OPEN]

        await eventually(put_back)
        entry = await audited(stack, "state.repaired", None, transaction_id=transaction_id)
        assert "m.room.power_levels" in entry["detail"] and "m.room.topic" in entry["detail"]
    # While the bridge is down, the power levels drift again.
    async with ClientSession() as session:
        tamper = appservice_bot(stack.config, session)
        levels = await tamper.get_state(room_id, "m.room.power_levels")
        await tamper.send_state(room_id, "m.room.power_levels", {**levels, "events_default": 50})
    async with stack.running():

        async def restored() -> bool:
            levels = await state(stack.buyer, room_id, "m.room.power_levels")
            return levels["events_default"] == 0

        await eventually(restored)

        # The repair's audit entry is written just after the state it puts back.
        async def repaired_twice() -> bool:
            entries = await audit(stack, transaction_id=transaction_id)
            repairs = [e for e in entries if e["action"] == "state.repaired"]
            assert len(repairs) == 2, repairs
            return True

        await eventually(repaired_twice)
        assert isinstance(await send(stack.buyer, room_id, "still open"), RoomSendResponse)


async def test_content_rules_redact_warn_and_notify(stack: Stack, hooks: WebhookReceiver) -> None:
    stack.config = with_webhooks(stack.config, hooks.url)
    async with stack.running() as bridge:
        transaction_id, room_id = await open_room(stack)
        bot = bridge.config.bot_mxid
        sent = {}
        for rule, content in [
            (
                "media_type",
                {
                    "msgtype": "m.file",
                    "body": "setup.exe",
                    "url": "mxc://localhost/fake1",
                    "info": {"mimetype": "application/x-msdownload", "size": 2048},
                },
            ),
            (
                "media_size",
                {
                    "msgtype": "m.image",
                    "body": "huge.png",
                    "url": "mxc://localhost/fake2",
                    "info": {"mimetype": "image/png", "size": 50 * 1024 * 1024},
                },
            ),
            ("contact_details", {"msgtype": "m.text", "body": "call me: +44 7911 123456"}),
        ]:
            response = await stack.buyer.room_send(room_id, "m.room.message", content)
            assert isinstance(response, RoomSendResponse), response
            sent[rule] = response.event_id
        fine = await send(stack.buyer, room_id, "Thanks, see you Friday at 10:30!")

        for rule, event_id in sent.items():
            await eventually(lambda e=event_id: redacted(stack.seller, room_id, e))
            violation = await eventually(
                lambda e=event_id: delivered(hooks, "policy.violation", e)
            )
            data = violation[0]["data"]
            assert [v["rule"] for v in data["violations"]] == [rule]
            assert "redact" in data["actions"] and "warn" in data["actions"]
            assert data["sender"]["role"] == "buyer"
            assert data["transaction_id"] == transaction_id
            entry = await audited(stack, "message.redacted", event_id, room_id=room_id)
            assert entry["reason"] == rule
        assert data["violations"][0]["findings"] == ["phone"]
        # Each broken rule warned the sender, without repeating what they wrote.

        async def warnings() -> list[dict] | None:
            found = [
                e
                for e in await timeline(stack.seller, room_id)
                if e["sender"] == bot
                and "your message was removed" in e["content"].get("body", "")
            ]
            return found if len(found) == 3 else None

        warnings = await eventually(warnings)
        assert all("7911" not in w["content"]["body"] for w in warnings)
        assert all(stack.buyer.user_id in w["content"]["m.mentions"]["user_ids"] for w in warnings)
        # The marketplace heard of the harmless message only; the phone number never reached it.
        created = await eventually(lambda: delivered(hooks, "message.created"))
        assert [d["data"]["event_id"] for d in created] == [fine.event_id]
        assert not any(leaks_phone(d) for d in hooks.delivered())
        assert not await redacted(stack.seller, room_id, fine.event_id)
        registry = bridge.metrics.registry
        for rule in sent:
            assert registry.get_sample_value("bridge_policy_violations_total", {"rule": rule}) == 1
        redactions = {"kind": "redact", "outcome": "done"}
        assert registry.get_sample_value("bridge_policy_actions_total", redactions) == 3


async def test_a_flood_mutes_and_then_unmutes(stack: Stack, hooks: WebhookReceiver) -> None:
    stack.config = with_policy(
        with_webhooks(stack.config, hooks.url), flood_messages=3, mute_seconds=MUTE_SECONDS
    )
    async with stack.running():
        transaction_id, room_id = await open_room(stack)
        for n in range(4):
            assert isinstance(await send(stack.buyer, room_id, f"buy now {n}"), RoomSendResponse)

        async def muted() -> bool:
            levels = await state(stack.seller, room_id, "m.room.power_levels")
            return levels["users"].get(stack.buyer.user_id) == -1

        await eventually(muted)
        refused = await send(stack.buyer, room_id, "still there?")
        assert not isinstance(refused, RoomSendResponse) and refused.status_code == "M_FORBIDDEN"
        (violation,) = await eventually(lambda: delivered(hooks, "policy.violation"))
        assert [v["rule"] for v in violation["data"]["violations"]] == ["flood"]
        assert violation["data"]["actions"] == ["warn", "mute", "alert"]
        # The mute runs out by the bridge's clock: moved, not waited for (a real wait
        # raced the refused send above on a busy machine).
        stack.clock.advance(MUTE_SECONDS)

        async def unmuted() -> bool:
            levels = await state(stack.seller, room_id, "m.room.power_levels")
            return stack.buyer.user_id not in levels["users"]

        await eventually(unmuted)
        assert isinstance(await send(stack.buyer, room_id, "sorry"), RoomSendResponse)
        muted_entry = await audited(stack, "user.muted", stack.buyer.user_id, room_id=room_id)
        unmuted_entry = await audited(stack, "user.unmuted", stack.buyer.user_id, room_id=room_id)
        assert muted_entry["reason"] == "flood" and unmuted_entry["id"] > muted_entry["id"]
        # The mute and its lifting are the plan's doing, not repairs.
        entries = await audit(stack, transaction_id=transaction_id)
        assert not [e for e in entries if e["action"] == "state.repaired"]


async def test_admins_are_exempt_and_parties_are_not_in_dispute_rooms(
    stack: Stack, hooks: WebhookReceiver, make_user: UserFactory
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(with_webhooks(stack.config, hooks.url), admin.user_id)
    async with stack.running() as bridge:
        # The moderation room is made once the bridge connects: there before any alert.
        moderation = await management_room(bridge, admin)
        transaction_id, _ = await open_room(stack)
        body = {
            "dispute_id": unique_id("dispute"),
            "transaction_id": transaction_id,
            "reason": "Never arrived.",
            "opened_by": "buyer",
        }
        status, dispute = await stack.api.call("POST", "/disputes", body)
        assert status == 201, dispute
        dispute_room = dispute["room_id"]
        for client in (admin, stack.buyer):
            await join(client, dispute_room)
        by_admin = await send(admin, dispute_room, "Call our support line: +44 20 7946 0958")
        by_buyer = await send(stack.buyer, dispute_room, "or email me, bob at gmail dot com")
        await eventually(lambda: redacted(admin, dispute_room, by_buyer.event_id))
        (violation,) = await eventually(lambda: delivered(hooks, "policy.violation"))
        assert violation["data"]["event_id"] == by_buyer.event_id
        assert violation["data"]["dispute_id"] == body["dispute_id"]
        assert not await redacted(admin, dispute_room, by_admin.event_id)
        # The redaction's audit entry is written just after the redaction itself.
        await audited(stack, "message.redacted", by_buyer.event_id, dispute_id=body["dispute_id"])
        entries = await audit(stack, dispute_id=body["dispute_id"])
        assert not [e for e in entries if e["subject"] == by_admin.event_id]
        assert [e["action"] for e in entries if e["subject"] == by_buyer.event_id] == [
            "message.redacted"
        ]
        # The rule alerts the admins in their moderation room.
        alert = f"Policy: {stack.buyer.user_id} broke contact_details in dispute"

        async def alerted() -> bool:
            bodies = [e["content"].get("body", "") for e in await timeline(admin, moderation)]
            return any(alert in b and body["dispute_id"] in b for b in bodies)

        await eventually(alerted)
        await audited(stack, "admins.alerted", stack.buyer.user_id, dispute_id=body["dispute_id"])


async def test_a_transcript_verifies_and_tampering_shows(
    stack: Stack, make_user: UserFactory, tmp_path: Path
) -> None:
    admin = await make_user("admin")
    stack.config = with_admin(stack.config, admin.user_id)
    async with stack.running() as bridge:
        transaction_id, room_id = await open_room(stack)
        hello = await send(stack.buyer, room_id, "Hello, is it still available?")
        phone = await send(stack.buyer, room_id, "text me on 07911 123456")
        await send(stack.seller, room_id, "Yes it is")
        await eventually(lambda: redacted(stack.seller, room_id, phone.event_id))

        async def complete() -> dict | None:
            status, document = await stack.api.call(
                "GET", f"/transactions/{transaction_id}/transcript"
            )
            assert status == 200, document
            kinds = [e["kind"] for e in document["entries"]]
            return document if "redaction" in kinds else None

        document = await eventually(complete)
        assert verify_transcript(document) == []
        entries = {e["event_id"]: e for e in document["entries"]}
        assert entries[hello.event_id]["body"] == "Hello, is it still available?"
        # Synapse purged the redacted text; our records kept it for the admins.
        (redaction,) = [e for e in document["entries"] if e["kind"] == "redaction"]
        assert redaction["redacts"] == phone.event_id
        assert redaction["original"]["content"]["body"] == "text me on 07911 123456"
        kinds = {e["kind"] for e in document["entries"]}
        assert {"membership", "power_levels", "message", "redaction"} <= kinds
        # Every export is audited (before the API answers), this one with its final hash.
        exported = [
            e
            for e in await audit(stack, transaction_id=transaction_id)
            if e["action"] == "transcript.exported"
        ]
        assert exported and document["final_hash"] in exported[-1]["detail"]

        # The verify command accepts the file, and refuses it once one entry is edited.
        path = tmp_path / "transcript.json"
        path.write_text(json.dumps(document))
        assert verify_cli(path, document["final_hash"]).returncode == 0
        entries[hello.event_id]["body"] = "Hello, I will pay outside"
        path.write_text(json.dumps(document))
        result = verify_cli(path, document["final_hash"])
        assert result.returncode == 1 and "edited" in result.stderr

        # An admin asks for it in the moderation room: the bot uploads it as a file.
        moderation = await management_room(bridge, admin)
        reply = await command(
            admin, moderation, f"!market transcript {transaction_id}", bridge.config.bot_mxid
        )
        assert "final hash" in reply
        # (The moderation room is found by its alias: other tests' bridges share it.)
        (upload,) = [
            e
            for e in await timeline(admin, moderation)
            if e["content"].get("filename") == f"transcript-{transaction_id}.json"
        ]
        assert upload["content"]["info"]["mimetype"] == "application/json"
        server, media_id = upload["content"]["url"].removeprefix("mxc://").split("/")
        url = f"{stack.config.homeserver.url}_matrix/client/v1/media/download/{server}/{media_id}"
        headers = {"Authorization": f"Bearer {admin.access_token}"}
        async with stack.session.get(url, headers=headers) as response:
            assert response.status == 200
            uploaded = json.loads(await response.read())
        assert verify_transcript(uploaded) == []
        assert uploaded["entry_count"] >= document["entry_count"]


def verify_cli(path: Path, final_hash: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "verify", str(path), "--final-hash", final_hash],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
