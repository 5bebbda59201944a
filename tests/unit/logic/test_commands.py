"""Admin commands from Matrix: who may give them where, and what each one does, against the
fake homeserver (replies, audit rows, and the market's changes)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import HomeserverUnavailable, MatrixError, txn_id
from appservice.transactions import Transaction, parse_room_event
from bridge.config import Config
from bridge.homeserver.inbox import InboxStore
from bridge.market import Market
from bridge.market.models import NewDispute
from bridge.policybot.commands import NOT_ALLOWED, CommandRunner
from policy.commands import help_text
from policy.ids import DisputeId, RoomId, TransactionId
from policy.rooms import EVENTS_DEFAULT, RoomKind
from policy.states import Access, DisputeState, Outcome
from policy.transcript import verify_transcript

from .conftest import (
    ADMIN,
    BUYER,
    SELLER,
    Rows,
    build_runner,
    new_transaction,
)
from .fakes import START_MS, FakeClock, FakeMatrix

STRANGER = "@stranger:localhost"
_event_ids = itertools.count(1)


@pytest.fixture
def runner(
    config: Config,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
) -> CommandRunner:
    return build_runner(config, market, matrix, inbox, db, clock)


@pytest.fixture
async def management(market: Market) -> RoomId:
    room_id = await market.management.ensure()
    assert room_id is not None
    return room_id


def message(room_id: str, body: Any, sender: str = ADMIN) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "event_id": f"$command{next(_event_ids)}",
        "room_id": room_id,
        "sender": sender,
        "origin_server_ts": START_MS,
        "content": {"msgtype": "m.text", "body": body},
    }


def reply_to(matrix: FakeMatrix, event: dict[str, Any]) -> dict[str, Any]:
    """The content of the bot's one reply to ``event`` (found by its txn id)."""
    expected = txn_id("reply", event["event_id"])
    replies = [call for call in matrix.called("send_message") if call[3] == expected]
    assert len(replies) == 1, replies
    assert replies[0][0] == event["room_id"] and replies[0][1] == "m.room.message"
    return replies[0][2]


async def command(
    runner: CommandRunner,
    matrix: FakeMatrix,
    room_id: RoomId,
    body: str,
    kind: RoomKind | None = RoomKind.MANAGEMENT,
    sender: str = ADMIN,
) -> str:
    """Give the command; the body of the bot's reply."""
    event = message(room_id, body, sender)
    await runner.handle(room_id, kind, event)
    return reply_to(matrix, event)["body"]


async def paid(market: Market, transaction_id: str = "order-1") -> RoomId:
    record, _ = await market.transactions.create(new_transaction(transaction_id))
    record = await market.transactions.record_payment(TransactionId(transaction_id))
    assert record.room_id is not None
    return record.room_id


async def disputed(market: Market, dispute_id: str = "d-1") -> RoomId:
    dispute, _ = await market.disputes.open(
        NewDispute(DisputeId(dispute_id), TransactionId("order-1"), "Item broken", "buyer")
    )
    assert dispute.room_id is not None
    return dispute.room_id


async def commands_audited(rows: Rows) -> list[tuple[str, str, str | None, str]]:
    return [
        (row["actor"], row["outcome"], row["reason"], row["detail"])
        for row in await rows.audit("command")
    ]


# --- who may command, and where -----------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "kind"),
    [
        (BUYER, RoomKind.MANAGEMENT),
        (SELLER, RoomKind.DISPUTE),
        ("@someone:localhost", RoomKind.MANAGEMENT),
        (ADMIN, RoomKind.TRANSACTION),
        (ADMIN, None),
    ],
)
async def test_a_non_admins_command_or_one_elsewhere_is_refused_and_changes_nothing(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    rows: Rows,
    sender: str,
    kind: RoomKind | None,
) -> None:
    room_id = await paid(market)
    audit_before = await rows.audit()
    outbox_before = await rows.outbox()
    matrix.forget_calls()
    event = message(room_id, "!market lock order-1", sender)
    await runner.handle(room_id, kind, event)
    # Nothing but the reply: no state sent, the transaction as it was.
    assert [call.method for call in matrix.calls] == ["send_message"]
    record = await market.transaction_records.get(TransactionId("order-1"))
    assert record is not None and record.access_override is None
    assert await rows.outbox() == outbox_before
    # One audit row more: the refused command.
    audit_after = await rows.audit()
    assert audit_after[: len(audit_before)] == audit_before
    (refusal,) = audit_after[len(audit_before) :]
    assert (refusal["action"], refusal["actor"], refusal["outcome"]) == (
        "command",
        sender,
        "refused",
    )
    assert refusal["reason"] == NOT_ALLOWED and refusal["detail"] == "!market lock order-1"
    assert refusal["room_id"] == room_id


async def test_a_refusal_is_a_notice_in_reply_to_the_command(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId
) -> None:
    event = message(management, "!market help", BUYER)
    await runner.handle(management, RoomKind.MANAGEMENT, event)
    assert reply_to(matrix, event) == {
        "msgtype": "m.notice",
        "body": NOT_ALLOWED,
        "m.relates_to": {"m.in_reply_to": {"event_id": event["event_id"]}},
    }


@pytest.mark.parametrize("kind", [RoomKind.MANAGEMENT, RoomKind.DISPUTE])
async def test_an_admin_may_command_in_the_management_room_and_a_dispute_room(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId, rows: Rows, kind: RoomKind
) -> None:
    body = await command(runner, matrix, management, "!market help", kind)
    assert body == help_text("!market")
    assert await commands_audited(rows) == [(ADMIN, "done", None, "!market help")]


async def test_the_management_room_is_recognised_without_a_kind(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId, rows: Rows
) -> None:
    body = await command(runner, matrix, management, "!market help", kind=None)
    assert body == help_text("!market")
    assert (await rows.audit("command"))[0]["outcome"] == "done"


@pytest.mark.parametrize(
    "body",
    ["hello there", "!marketing help", "please !market help", "", None, 42, {"text": "x"}],
)
async def test_a_message_not_addressed_to_the_bot_does_nothing(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId, rows: Rows, body: Any
) -> None:
    matrix.forget_calls()
    await runner.handle(management, RoomKind.MANAGEMENT, message(management, body))
    assert matrix.calls == []
    assert await rows.audit("command") == []


async def test_a_message_without_content_does_nothing(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId, rows: Rows
) -> None:
    event = {"type": "m.room.message", "event_id": "$nocontent", "sender": ADMIN}
    matrix.forget_calls()
    await runner.handle(management, RoomKind.MANAGEMENT, event)
    assert matrix.calls == [] and await rows.audit("command") == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("!market frobnicate", "unknown command 'frobnicate'; try help"),
        ("!market", "which command? try help"),
        ("!market status", "usage: !market status <transaction or dispute id>"),
        ("!market help\n!market disputes", "one command per message"),
    ],
)
async def test_a_command_the_parser_refuses_is_answered_with_its_reason(
    runner: CommandRunner,
    matrix: FakeMatrix,
    management: RoomId,
    rows: Rows,
    body: str,
    reason: str,
) -> None:
    assert await command(runner, matrix, management, body) == reason
    assert await commands_audited(rows) == [(ADMIN, "refused", reason, body)]


async def test_an_overlong_command_is_refused_and_audited_shortened(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId, rows: Rows
) -> None:
    body = "!market status " + "x" * 1000
    reply = await command(runner, matrix, management, body)
    assert reply == "a command is at most 1000 characters"
    (row,) = await rows.audit("command")
    assert row["outcome"] == "refused" and row["detail"] == body[:200]


# --- each command -------------------------------------------------------------------------


async def test_disputes_says_when_none_is_open(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId
) -> None:
    assert await command(runner, matrix, management, "!market disputes") == "No open disputes."


async def test_disputes_lists_each_open_dispute(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market, "order-1")
    await paid(market, "order-2")
    await disputed(market, "d-1")
    await market.disputes.open(
        NewDispute(DisputeId("d-2"), TransactionId("order-2"), "Never arrived", "seller")
    )
    body = await command(runner, matrix, management, "!market disputes")
    assert body.splitlines() == [
        "d-1 on order-1, opened by the buyer: Item broken",
        "d-2 on order-2, opened by the seller: Never arrived",
    ]


async def test_a_resolved_dispute_is_no_longer_listed(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    await command(runner, matrix, dispute_room, "!market resolve d-1 no_action", RoomKind.DISPUTE)
    assert await command(runner, matrix, management, "!market disputes") == "No open disputes."


async def test_status_of_a_transaction_gives_its_state_and_room_access(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await market.transactions.create(new_transaction("order-9", title="Old lamp"))
    body = await command(runner, matrix, management, "!market status order-9")
    assert body == "Transaction order-9 (“Old lamp”): awaiting_payment, room locked."


async def test_status_of_a_disputed_transaction_names_the_dispute_and_the_frozen_room(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    await disputed(market)
    body = await command(runner, matrix, management, "!market status order-1")
    assert body == "Transaction order-1 (“Vintage bike”): paid, room frozen, dispute d-1 open."


async def test_status_of_a_dispute_gives_its_state_and_decision(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    assert (
        await command(runner, matrix, management, "!market status d-1")
        == "Dispute d-1 on order-1: open."
    )
    await command(
        runner, matrix, dispute_room, "!market resolve d-1 refund_buyer", RoomKind.DISPUTE
    )
    assert (
        await command(runner, matrix, management, "!market status d-1")
        == "Dispute d-1 on order-1: resolved (refund_buyer)."
    )


async def test_an_unknown_id_fails_with_the_reason(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId, rows: Rows
) -> None:
    body = await command(runner, matrix, management, "!market status nope")
    assert body == "no transaction or dispute nope"
    assert await commands_audited(rows) == [
        (ADMIN, "failed", "no transaction or dispute nope", "!market status nope")
    ]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("!market lock nope", "no transaction nope"),
        ("!market resolve nope refund_buyer", "no dispute nope"),
        ("!market transcript nope", "no transaction or dispute nope"),
        ("!market remove @stranger:localhost nope", "no transaction or dispute nope"),
    ],
)
async def test_each_command_on_an_unknown_id_fails_with_the_reason(
    runner: CommandRunner,
    matrix: FakeMatrix,
    management: RoomId,
    rows: Rows,
    body: str,
    reason: str,
) -> None:
    assert await command(runner, matrix, management, body) == reason
    (row,) = await rows.audit("command")
    assert (row["outcome"], row["reason"]) == ("failed", reason)


async def test_lock_makes_the_transaction_room_read_only_until_the_next_change(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    management: RoomId,
    rows: Rows,
) -> None:
    room_id = await paid(market)
    body = await command(runner, matrix, management, "!market lock order-1")
    assert body == (
        "Transaction order-1 is locked: its room is locked until the marketplace's next change."
    )
    record = await market.transaction_records.get(TransactionId("order-1"))
    assert record is not None and record.access_override is Access.LOCKED
    levels = matrix.state_of(room_id, "m.room.power_levels")
    assert levels["events_default"] == EVENTS_DEFAULT[Access.LOCKED]
    (change,) = [r for r in await rows.audit("room.state_changed") if r["actor"] == ADMIN]
    assert (change["reason"], change["detail"]) == ("lock", "room open -> locked")
    assert (await rows.audit("command"))[0]["outcome"] == "done"


async def test_unlock_lets_the_parties_post_while_awaiting_payment(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    record, _ = await market.transactions.create(new_transaction())
    body = await command(runner, matrix, management, "!market unlock order-1")
    assert body == (
        "Transaction order-1 is unlocked: its room is open until the marketplace's next change."
    )
    levels = matrix.state_of(record.room_id, "m.room.power_levels")
    assert levels["events_default"] == EVENTS_DEFAULT[Access.OPEN]


async def test_lock_of_a_closed_transaction_fails_and_leaves_it_archived(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    room_id = await paid(market)
    await market.transactions.close(TransactionId("order-1"), Outcome.COMPLETED)
    body = await command(runner, matrix, management, "!market lock order-1")
    assert body == "the transaction is closed; its room is archived"
    levels = matrix.state_of(room_id, "m.room.power_levels")
    assert levels["events_default"] == EVENTS_DEFAULT[Access.ARCHIVED]


async def test_resolve_resolves_the_dispute_from_matrix_by_the_sender(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    body = await command(
        runner,
        matrix,
        dispute_room,
        "!market resolve d-1 refund_buyer  Photos   show damage",
        RoomKind.DISPUTE,
    )
    assert body == "Dispute d-1 is resolved: refund_buyer."
    dispute = await market.dispute_records.get(DisputeId("d-1"))
    assert dispute is not None and dispute.state is DisputeState.RESOLVED
    assert (dispute.decision, dispute.note) == ("refund_buyer", "Photos show damage")
    assert (dispute.resolved_by, dispute.source) == (ADMIN, "matrix")
    (resolved,) = await rows.outbox("dispute.resolved")
    data = json.loads(resolved["body"])["data"]
    assert (data["source"], data["resolved_by"], data["decision"]) == (
        "matrix",
        ADMIN,
        "refund_buyer",
    )
    # The dispute room is archived, the transaction room thawed.
    archived = matrix.state_of(dispute_room, "m.room.power_levels")
    assert archived["events_default"] == EVENTS_DEFAULT[Access.ARCHIVED]


async def test_resolve_with_a_decision_not_configured_fails_and_leaves_the_dispute_open(
    runner: CommandRunner, market: Market, matrix: FakeMatrix
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    body = await command(
        runner, matrix, dispute_room, "!market resolve d-1 keep_money", RoomKind.DISPUTE
    )
    assert body == "decision: must be one of refund_buyer, release_to_seller, no_action"
    dispute = await market.dispute_records.get(DisputeId("d-1"))
    assert dispute is not None and dispute.state is DisputeState.OPEN


async def test_resolving_again_the_same_way_is_answered_alike_and_notified_once(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    for _ in range(2):
        body = await command(
            runner, matrix, dispute_room, "!market resolve d-1 no_action", RoomKind.DISPUTE
        )
        assert body == "Dispute d-1 is resolved: no_action."
    assert len(await rows.outbox("dispute.resolved")) == 1


async def test_resolving_a_resolved_dispute_another_way_fails_and_keeps_the_decision(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    await command(runner, matrix, dispute_room, "!market resolve d-1 no_action", RoomKind.DISPUTE)
    body = await command(
        runner, matrix, dispute_room, "!market resolve d-1 refund_buyer", RoomKind.DISPUTE
    )
    assert body == "the dispute is already resolved as no_action"
    dispute = await market.dispute_records.get(DisputeId("d-1"))
    assert dispute is not None and dispute.decision == "no_action"
    assert [row["outcome"] for row in await rows.audit("command")] == ["done", "failed"]


async def test_remove_kicks_someone_who_is_not_a_party(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    management: RoomId,
    rows: Rows,
) -> None:
    room_id = await paid(market)
    matrix.rooms[room_id].members[STRANGER] = "join"
    body = await command(runner, matrix, management, f"!market remove {STRANGER} order-1")
    assert body == f"{STRANGER} was removed from the room of order-1."
    assert matrix.rooms[room_id].members[STRANGER] == "leave"
    ((kicked_room, kicked, _reason),) = [call.args for call in matrix.called("kick")]
    assert (kicked_room, kicked) == (room_id, STRANGER)
    (removed,) = await rows.audit("member.removed")
    assert (removed["actor"], removed["subject"]) == (ADMIN, STRANGER)


async def test_remove_by_dispute_id_kicks_from_the_dispute_room(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    matrix.rooms[dispute_room].members[STRANGER] = "join"
    await command(runner, matrix, management, f"!market remove {STRANGER} d-1")
    assert matrix.rooms[dispute_room].members[STRANGER] == "leave"


@pytest.mark.parametrize("user", [BUYER, SELLER, "@marketbot:localhost"])
async def test_remove_refuses_a_party_or_the_bot(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    management: RoomId,
    rows: Rows,
    user: str,
) -> None:
    room_id = await paid(market)
    body = await command(runner, matrix, management, f"!market remove {user} order-1")
    assert body == "parties and the bot stay while the deal lasts"
    assert not matrix.called("kick")
    assert matrix.rooms[room_id].members.get(user) != "leave"
    (row,) = await rows.audit("command")
    assert row["outcome"] == "failed"


async def test_transcript_uploads_a_json_file_and_answers_with_its_final_hash(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    management: RoomId,
    rows: Rows,
) -> None:
    room_id = await paid(market)
    said = {
        "type": "m.room.message",
        "event_id": "$hello",
        "room_id": room_id,
        "sender": BUYER,
        "origin_server_ts": START_MS + 5,
        "content": {"msgtype": "m.text", "body": "Is it still available?"},
    }
    await inbox.store_transaction(Transaction("t1", [parse_room_event(said)], []))
    body = await command(runner, matrix, management, "!market transcript order-1")

    ((content_type, filename),) = [call.args for call in matrix.called("upload")]
    assert (content_type, filename) == ("application/json", "transcript-order-1.json")
    ((uri, data),) = matrix.uploads.items()
    document = json.loads(data)
    assert document["transaction_id"] == "order-1" and document["room_id"] == room_id
    assert [entry["event_id"] for entry in document["entries"]] == ["$hello"]
    assert document["entry_count"] == 1
    assert verify_transcript(document) == []
    final = document["final_hash"]
    assert final == document["entries"][-1]["hash"]

    posted = [c for c in matrix.messages_in(management) if c.get("msgtype") == "m.file"]
    assert posted == [
        {
            "msgtype": "m.file",
            "body": "transcript-order-1.json",
            "filename": "transcript-order-1.json",
            "url": uri,
            "info": {"mimetype": "application/json", "size": len(data)},
        }
    ]
    assert body.startswith(f"Transcript of order-1: 1 entries, final hash {final} ")
    (exported,) = await rows.audit("transcript.exported")
    assert exported["actor"] == ADMIN and exported["transaction_id"] == "order-1"
    assert exported["detail"] == f"1 entries, final hash {final}"
    assert (await rows.audit("command"))[0]["outcome"] == "done"


async def test_transcript_of_a_dispute_reads_the_dispute_room(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    management: RoomId,
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    said = {
        "type": "m.room.message",
        "event_id": "$complaint",
        "room_id": dispute_room,
        "sender": BUYER,
        "origin_server_ts": START_MS + 7,
        "content": {"msgtype": "m.text", "body": "It arrived broken"},
    }
    await inbox.store_transaction(Transaction("t1", [parse_room_event(said)], []))
    await command(runner, matrix, management, "!market transcript d-1")
    ((data),) = matrix.uploads.values()
    document = json.loads(data)
    assert (document["room_kind"], document["dispute_id"]) == ("dispute", "d-1")
    assert [entry["event_id"] for entry in document["entries"]] == ["$complaint"]


async def test_a_transcript_asked_for_in_a_dispute_room_is_posted_in_the_moderation_room(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    files_before = [c for c in matrix.messages_in(dispute_room) if c.get("msgtype") == "m.file"]
    body = await command(
        runner, matrix, dispute_room, "!market transcript order-1", RoomKind.DISPUTE
    )
    assert body.startswith("The transcript of order-1 is in the moderation room")
    # The evidence (with the originals of removed messages) never reaches the parties.
    files = [c for c in matrix.messages_in(dispute_room) if c.get("msgtype") == "m.file"]
    assert files == files_before == []
    assert [c["filename"] for c in matrix.messages_in(management) if "filename" in c] == [
        "transcript-order-1.json"
    ]
    assert "final hash" not in body


async def test_the_dispute_list_asked_for_in_a_dispute_room_is_posted_in_the_moderation_room(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    body = await command(runner, matrix, dispute_room, "!market disputes", RoomKind.DISPUTE)
    assert body.startswith("The list of open disputes is in the moderation room")
    assert "Item broken" not in body
    posted = [c["body"] for c in matrix.messages_in(management)]
    assert "d-1 on order-1, opened by the buyer: Item broken" in posted


async def test_evidence_without_a_moderation_room_is_refused(
    runner: CommandRunner, market: Market, matrix: FakeMatrix
) -> None:
    await paid(market)
    dispute_room = await disputed(market)
    body = await command(
        runner, matrix, dispute_room, "!market transcript order-1", RoomKind.DISPUTE
    )
    assert body == "there is no moderation room to post evidence in"
    assert not matrix.called("upload")


async def test_the_homeserver_unavailable_fails_the_command_with_a_retry_hint(
    runner: CommandRunner,
    market: Market,
    matrix: FakeMatrix,
    management: RoomId,
    rows: Rows,
) -> None:
    room_id = await paid(market)
    matrix.rooms[room_id].members[STRANGER] = "join"
    matrix.fail("kick", HomeserverUnavailable("connection refused"))
    body = await command(runner, matrix, management, f"!market remove {STRANGER} order-1")
    assert body == "The homeserver did not answer (connection refused); try again."
    assert matrix.rooms[room_id].members[STRANGER] == "join"
    (row,) = await rows.audit("command")
    assert (row["outcome"], row["reason"]) == ("failed", body)


async def test_a_matrix_error_fails_the_command_with_a_retry_hint(
    runner: CommandRunner, market: Market, matrix: FakeMatrix, management: RoomId
) -> None:
    await paid(market)
    matrix.fail("upload", MatrixError(413, "M_TOO_LARGE", "too large"))
    body = await command(runner, matrix, management, "!market transcript order-1")
    assert body.startswith("The homeserver did not answer (") and body.endswith("; try again.")
    assert not [c for c in matrix.messages_in(management) if c.get("msgtype") == "m.file"]


async def test_the_same_command_event_is_answered_under_the_same_txn_id(
    runner: CommandRunner, matrix: FakeMatrix, management: RoomId
) -> None:
    event = message(management, "!market help")
    await runner.handle(management, RoomKind.MANAGEMENT, event)
    await runner.handle(management, RoomKind.MANAGEMENT, event)
    txns = {call[3] for call in matrix.called("send_message") if call[0] == management}
    assert txn_id("reply", event["event_id"]) in txns
    replies = [c for c in matrix.messages_in(management) if c.get("body") == help_text("!market")]
    assert len(replies) == 1  # the homeserver answered the repeat with the same event
