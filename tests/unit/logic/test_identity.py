"""Managed accounts, sessions, suspension, erasure and blocked invitations, on the fake
homeserver (the real one: tests/e2e/test_identity.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import MatrixError
from bridge.config import Config
from bridge.homeserver.inbox import InboxStore
from bridge.identity import Identity
from bridge.identity.errors import NotManaged, UnknownUser, UserErased, UserSuspended
from bridge.identity.lifecycle import UserOnHold
from bridge.identity.records import Profile
from bridge.market import Market
from bridge.market.errors import Conflict, InvalidRequest
from bridge.market.models import NewDispute, NewTransaction, Resolution
from bridge.policybot.originals import MaskedOriginals
from bridge.policybot.transcripts import Transcripts
from policy.ids import DisputeId, MarketUserId, TransactionId, UserId
from policy.transcript import verify_transcript

from .conftest import Rows
from .fakes import FakeClock, FakeMatrix, no_stored_transcript

ANN, SAM = MarketUserId("Ann_1"), MarketUserId("sam:2")
ANN_MXID, SAM_MXID = "@market__ann__1:localhost", "@market_sam=3a2:localhost"


@pytest.fixture
def identity(config: Config, db: Database, matrix: FakeMatrix, clock: FakeClock, market: Market):
    return Identity.build(config, db, matrix, clock, market)  # type: ignore[arg-type]


async def deal(identity: Identity, market: Market, order: str = "order-1") -> Any:
    """A paid transaction between two managed users."""
    for user in (ANN, SAM):
        await identity.accounts.upsert(user, Profile(f"{user} here"), None)
    buyer = await identity.accounts.party("buyer", ANN, None, None)
    seller = await identity.accounts.party("seller", SAM, None, None)
    record, _ = await market.transactions.create(
        NewTransaction(TransactionId(order), "Road bike", buyer, seller)
    )
    return await market.transactions.record_payment(record.transaction_id)


def data(row: dict) -> dict:
    return json.loads(row["body"])["data"]


async def test_a_user_without_matrix_id_gets_a_managed_account_with_its_profile(
    identity: Identity, matrix: FakeMatrix
) -> None:
    user, created = await identity.accounts.upsert(ANN, Profile("Ann, call 07911 123456"), None)
    assert created and user.managed and user.matrix_id == ANN_MXID
    assert ANN_MXID in matrix.users
    # The display name reaches the other party: its contact details are masked there.
    assert matrix.profiles[ANN_MXID]["displayname"] == "Ann, call [contact details hidden]"
    assert user.profile.display_name == "Ann, call 07911 123456"
    matrix.profiles[ANN_MXID]["displayname"] = "changed behind our back"
    again, created = await identity.accounts.upsert(ANN, Profile("Ann, call 07911 123456"), None)
    assert not created and again == user  # unchanged: the record stays as it was
    assert matrix.profiles[ANN_MXID]["displayname"] == "Ann, call [contact details hidden]"


async def test_a_failed_upsert_stores_nothing_and_its_retry_completes_it(
    identity: Identity, matrix: FakeMatrix
) -> None:
    matrix.fail("set_account", MatrixError(500, "M_UNKNOWN", "down"))
    with pytest.raises(MatrixError):
        await identity.accounts.upsert(ANN, Profile("Ann"), None)
    assert await identity.accounts.upsert(ANN, Profile("Ann"), None)
    assert matrix.profiles[ANN_MXID]["displayname"] == "Ann"


async def test_bindings_never_move(identity: Identity, matrix: FakeMatrix) -> None:
    brought = matrix.add_user("@carol:localhost")
    user, _ = await identity.accounts.upsert(MarketUserId("carol"), Profile("C"), brought)
    assert not user.managed and user.matrix_id == brought
    assert not matrix.called("set_account")  # a brought account's profile is its owner's
    with pytest.raises(Conflict):
        await identity.accounts.upsert(MarketUserId("carol"), Profile("C"), UserId("@x:localhost"))
    with pytest.raises(Conflict):  # bound to carol already
        await identity.accounts.upsert(MarketUserId("other"), Profile("O"), brought)
    with pytest.raises(InvalidRequest):  # our namespace is not something one brings
        await identity.accounts.upsert(MarketUserId("x"), Profile("X"), UserId(ANN_MXID))
    with pytest.raises(UnknownUser):
        await identity.accounts.party("buyer", MarketUserId("nobody"), None, None)
    with pytest.raises(NotManaged):
        await identity.sessions.create(MarketUserId("carol"), None)


async def test_display_names_shown_carry_no_digits_and_a_party_profile_keeps_its_rest(
    identity: Identity, matrix: FakeMatrix
) -> None:
    await identity.accounts.upsert(ANN, Profile("Ann 07911", None, "ann@example.org"), None)
    assert matrix.profiles[ANN_MXID]["displayname"] == "Ann"  # half a number, dropped
    await identity.accounts.party("buyer", ANN, Profile("Ann B."), None)
    user = await identity.accounts.get(ANN)
    assert user.profile == Profile("Ann B.", None, "ann@example.org")


async def test_managed_parties_are_joined_without_an_invitation_to_accept(
    identity: Identity, market: Market, matrix: FakeMatrix
) -> None:
    record = await deal(identity, market)
    members = matrix.rooms[record.room_id].members
    assert members[UserId(ANN_MXID)] == members[UserId(SAM_MXID)] == "join"


async def test_sessions_expire_on_the_homeserver_and_are_pruned(
    identity: Identity, matrix: FakeMatrix, clock: FakeClock
) -> None:
    await identity.accounts.upsert(ANN, Profile("Ann"), None)
    first = await identity.sessions.create(ANN, 60)
    device, valid_until = first.record.device_id, first.record.expires_at
    assert matrix.devices[ANN_MXID][device][1] == valid_until == clock.now_ms() + 60_000
    assert [s.device_id for s in await identity.sessions.live(ANN)] == [device]
    clock.advance(61)
    assert await identity.sessions.live(ANN) == []
    await identity.sessions.create(ANN, None)  # the ended device is deleted first
    assert device not in matrix.devices[ANN_MXID]
    with pytest.raises(InvalidRequest):
        await identity.sessions.create(ANN, identity.sessions.max_seconds + 1)


async def test_suspension_removes_the_user_everywhere_and_ends_their_sessions(
    identity: Identity, market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    record = await deal(identity, market)
    await identity.sessions.create(ANN, None)
    user = await identity.lifecycle.suspend(ANN, "fraud report")
    assert user.suspended_at is not None
    assert matrix.devices[ANN_MXID] == {} and ANN_MXID in matrix.locked
    assert matrix.rooms[record.room_id].members[UserId(ANN_MXID)] == "leave"
    with pytest.raises(UserSuspended):
        await identity.sessions.create(ANN, None)
    with pytest.raises(UserSuspended):
        await identity.accounts.party("buyer", ANN, None, None)
    (row,) = await rows.outbox("user.suspended")
    assert row["stream"] == f"user:{ANN}"
    assert data(row) == {"user_id": ANN, "matrix_id": ANN_MXID, "reason": "fraud report"}
    assert len(await rows.audit("user.suspended")) == 1
    await identity.lifecycle.suspend(ANN, None)  # again: nothing new
    assert len(await rows.outbox("user.suspended")) == 1
    await identity.lifecycle.unsuspend(ANN, None)
    assert ANN_MXID not in matrix.locked
    assert matrix.rooms[record.room_id].members[UserId(ANN_MXID)] == "join"
    assert len(await rows.outbox("user.unsuspended")) == 1


async def test_erasure_waits_for_open_disputes_and_leaves_a_transcript_that_verifies(
    identity: Identity,
    market: Market,
    matrix: FakeMatrix,
    rows: Rows,
    inbox: InboxStore,
    db: Database,
    clock: FakeClock,
) -> None:
    record = await deal(identity, market)
    room_id = record.room_id
    event = {
        "event_id": "$ann1",
        "room_id": room_id,
        "type": "m.room.message",
        "sender": ANN_MXID,
        "origin_server_ts": clock.now_ms(),
        "content": {"msgtype": "m.text", "body": "my name is Ann Example"},
    }
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, 'done',"
        " 't1', $5)",
        "$ann1",
        room_id,
        "m.room.message",
        ANN_MXID,
        clock.now_ms(),
        json.dumps(event),
    )
    await market.disputes.open(
        NewDispute(DisputeId("d-1"), record.transaction_id, "Never arrived", "buyer")
    )
    with pytest.raises(UserOnHold):
        await identity.lifecycle.erase(ANN, None)
    assert not matrix.called("deactivate_managed")
    await market.disputes.resolve(DisputeId("d-1"), Resolution("no_action", "", "m", "api"))
    user = await identity.lifecycle.erase(ANN, "GDPR request")
    assert user.erased_at is not None and user.profile == Profile()
    assert [call[1] for call in matrix.called("redact")] == ["$ann1"]
    assert [call[0] for call in matrix.called("deactivate_managed")] == [ANN_MXID]
    transcripts = Transcripts(
        market.transaction_records,
        market.dispute_records,
        inbox,
        MaskedOriginals(db),
        market.audit,
        clock,
        no_stored_transcript,
    )
    document = await transcripts.of_transaction(record.transaction_id, actor="marketplace")
    assert verify_transcript(document) == []
    (entry,) = [e for e in document["entries"] if e["event_id"] == "$ann1"]
    assert entry["kind"] == "erased" and "Ann Example" not in json.dumps(document)
    assert len(await rows.outbox("user.erased")) == 1
    with pytest.raises(UserErased):
        await identity.accounts.upsert(ANN, Profile("Ann"), None)
    export = await identity.lifecycle.export(ANN)
    assert export["user"].erased_at is not None and "Ann Example" not in str(export)


async def test_a_blocked_invitation_does_not_fail_the_create(
    identity: Identity, market: Market, matrix: FakeMatrix, rows: Rows
) -> None:
    brought = matrix.add_user("@carol:localhost")
    await identity.accounts.upsert(MarketUserId("carol"), Profile("Carol"), brought)
    await identity.accounts.upsert(SAM, Profile("Sam"), None)
    matrix.fail("invite", MatrixError(403, "M_INVITE_BLOCKED", "blocked"))
    buyer = await identity.accounts.party("buyer", MarketUserId("carol"), None, None)
    seller = await identity.accounts.party("seller", SAM, None, None)
    record, created = await market.transactions.create(
        NewTransaction(TransactionId("order-2"), "Lamp", buyer, seller)
    )
    assert created and record.buyer.invite_blocked and not record.seller.invite_blocked
    (row,) = await rows.outbox("room.invite_failed")
    assert data(row)["user_id"] == "carol" and data(row)["errcode"] == "M_INVITE_BLOCKED"
    # The next repair invites again; once it gets through, the party is no longer blocked.
    await market.reconciler.repair_room(record.room_id)
    latest = await market.transactions.get(record.transaction_id)
    assert not latest.buyer.invite_blocked
    assert len(await rows.outbox("room.invite_failed")) == 1
