"""A lone message worked out as it arrives (bridge.homeserver.arrivals): decided from what
the inbox worker kept of its sender's last message, stored as done with its writes in one
statement before the homeserver is answered; and, whenever what was kept no longer holds
(the transaction changed, another replica stored a message of the sender or changed their
mute, something of the room is pending), nothing of that statement kept and the message
worked out the usual way, as if nothing had been kept."""

from __future__ import annotations

import asyncio
import json

import pytest
from mautrix.util.async_db import Database

from bridge.homeserver.inbox_worker import InboxWorker
from bridge.homeserver.intake import HomeserverIntake
from bridge.market import Market
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups
from policy.ids import RoomId, TransactionId
from policy.states import Outcome
from tests.harness import eventually

from .conftest import BUYER, SELLER, Rows
from .fakes import START_MS
from .test_inbox_handoff import all_done, push, webhook_events
from .test_inbox_worker import reset, sample, statuses, text

pytestmark = pytest.mark.parametrize("db", ["postgres"], indirect=True)


def worked_out(metrics: Metrics) -> float:
    """Messages worked out as they arrived."""
    return sample(metrics, "bridge_inbox_events_received_total", {"status": "worked_out"})


async def said_and_done(
    db: Database, worker: InboxWorker, intake: HomeserverIntake, *events: dict
) -> None:
    """Pushed one at a time, each worked out (either way) before the next."""
    for event in events:
        await push(intake, event)
        await all_done(db, event)
        await worker.settled()


async def test_a_senders_next_messages_are_worked_out_as_they_arrive(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    wakeups: Wakeups,
    metrics: Metrics,
    paid_room: RoomId,
    reads: list[RoomId],
) -> None:
    first = text(paid_room, BUYER, "hello", ts=START_MS)
    await said_and_done(db, worker, intake, first)  # handed over: its sender is kept
    reset(wakeups)
    later = [text(paid_room, BUYER, f"offer {n}", ts=START_MS + n * 4_000) for n in (1, 2)]
    for event in later:
        await push(intake, event)
        # Done when the push is answered: no wake-up, no task, no read.
        assert (await statuses(db))[event["event_id"]] == ("done", None)
    assert wakeups.inbox.sets == 0  # type: ignore[attr-defined]
    assert not worker._rooms and reads == []
    assert worked_out(metrics) == 2
    assert await webhook_events(db) == [e["event_id"] for e in (first, *later)]
    rows = await db.fetch("SELECT event_id FROM messages ORDER BY ts")
    assert [r["event_id"] for r in rows] == [e["event_id"] for e in (first, *later)]


async def test_each_party_is_kept_apart(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
) -> None:
    await said_and_done(db, worker, intake, text(paid_room, BUYER, "hi"))
    await said_and_done(db, worker, intake, text(paid_room, SELLER, "hello"))
    await push(intake, text(paid_room, BUYER, "still there?"))
    await push(intake, text(paid_room, SELLER, "yes"))
    assert worked_out(metrics) == 2


async def test_a_flood_is_judged_the_usual_way_from_the_whole_history(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    rows: Rows,
) -> None:
    # flood_messages is 3 in 10 s (conftest): the fourth message within the window floods.
    messages = [text(paid_room, BUYER, f"buy {n}", ts=START_MS + n * 1_000) for n in range(4)]
    await said_and_done(db, worker, intake, *messages)
    assert worked_out(metrics) == 2  # the second and the third
    planned = {p["kind"]: p for p in await rows.planned()}
    assert planned["mute"]["key"] == f"mute:{messages[-1]['event_id']}"


async def test_a_contact_split_across_kept_messages_is_found(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    rows: Rows,
) -> None:
    parts = ["call me on 0791", "thanks", "112 3456 ok"]
    messages = [text(paid_room, SELLER, p, ts=START_MS + n * 20_000) for n, p in enumerate(parts)]
    await said_and_done(db, worker, intake, *messages)
    assert worked_out(metrics) == 1  # the second: the third breaks a rule
    (violation,) = await rows.outbox("policy.violation")
    data = json.loads(violation["body"])["data"]
    assert data["event_id"] == messages[-1]["event_id"]
    assert [v["rule"] for v in data["violations"]] == ["contact_details"]


async def test_a_transaction_changed_since_is_read_again(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    market: Market,
    paid_room: RoomId,
) -> None:
    await said_and_done(db, worker, intake, text(paid_room, BUYER, "hello"))
    await market.transactions.close(TransactionId("order-1"), Outcome.COMPLETED)
    late = text(paid_room, BUYER, "one more thing", ts=START_MS + 1_000)
    await push(intake, late)
    assert worked_out(metrics) == 0  # judged from the transaction as it is now
    await all_done(db, late)
    await worker.settled()
    assert late["event_id"] in await webhook_events(db)


async def stored_elsewhere(db: Database, event: dict, status: str = "done") -> None:
    """Stored by another replica (and worked out there, if done): never seen here."""
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, $2, $3, $4, $5, $6, $7,"
        " 'elsewhere', 0)",
        event["event_id"],
        event["room_id"],
        event["type"],
        event["sender"],
        event["origin_server_ts"],
        json.dumps(event),
        status,
    )


async def test_a_message_another_replica_stored_since_is_counted(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    rows: Rows,
) -> None:
    await said_and_done(db, worker, intake, text(paid_room, BUYER, "buy 0", ts=START_MS))
    for n in (1, 2):  # sent in the same millisecond: only their order tells them apart
        await stored_elsewhere(db, text(paid_room, BUYER, f"buy {n}", ts=START_MS))
    fourth = text(paid_room, BUYER, "buy 3", ts=START_MS + 3_000)
    await said_and_done(db, worker, intake, fourth)  # kept: two messages; in fact four
    assert worked_out(metrics) == 0
    planned = {p["kind"]: p for p in await rows.planned()}
    assert planned["mute"]["key"] == f"mute:{fourth['event_id']}"


async def test_a_message_stored_before_but_sent_after_the_kept_one_is_counted(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    rows: Rows,
) -> None:
    """A read counts only what was sent before the message it is read with: a message of
    the sender's stored earlier with a later time (clocks differ between servers) is not
    in what was kept."""
    for n in (1, 2):
        await stored_elsewhere(db, text(paid_room, BUYER, f"buy {n}", ts=START_MS + 5_000 + n))
    await said_and_done(db, worker, intake, text(paid_room, BUYER, "buy 0", ts=START_MS))
    fourth = text(paid_room, BUYER, "buy 3", ts=START_MS + 6_000)
    await said_and_done(db, worker, intake, fourth)  # kept: two messages; in fact four
    assert worked_out(metrics) == 0
    planned = {p["kind"]: p for p in await rows.planned()}
    assert planned["mute"]["key"] == f"mute:{fourth['event_id']}"


async def test_a_mute_lifted_elsewhere_is_read_again(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    rows: Rows,
) -> None:
    """Kept muted, a sender's flood is not punished again; lifted by another replica, it
    is."""
    await db.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)",
        paid_room,
        BUYER,
        START_MS + 3_600_000,
    )
    messages = [text(paid_room, BUYER, f"buy {n}", ts=START_MS + n * 1_000) for n in range(4)]
    await said_and_done(db, worker, intake, *messages[:3])
    assert worked_out(metrics) == 2
    await db.execute("DELETE FROM mutes")
    await said_and_done(db, worker, intake, messages[3])
    assert worked_out(metrics) == 2
    planned = {p["kind"]: p for p in await rows.planned()}
    assert planned["mute"]["key"] == f"mute:{messages[3]['event_id']}"


async def test_behind_a_pending_event_of_the_room_the_message_waits_its_turn(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
) -> None:
    first = text(paid_room, BUYER, "hello", ts=START_MS)
    await said_and_done(db, worker, intake, first)
    other = text(paid_room, SELLER, "hi", ts=START_MS + 500)
    await stored_elsewhere(db, other, "pending")  # not worked out yet
    second = text(paid_room, BUYER, "how are you?", ts=START_MS + 1_000)
    await push(intake, second)
    assert worked_out(metrics) == 0
    await all_done(db, other, second)
    await worker.settled()
    assert await webhook_events(db) == [e["event_id"] for e in (first, other, second)]


async def test_a_transaction_sent_again_changes_nothing(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
) -> None:
    first, second = text(paid_room, BUYER, "hello"), text(paid_room, BUYER, "hello again")
    await said_and_done(db, worker, intake, first)
    await push(intake, second)
    await push(intake, second)  # no answer reached the homeserver: it sends it again
    await worker.settled()
    assert worked_out(metrics) == 1
    assert await webhook_events(db) == [first["event_id"], second["event_id"]]


async def test_an_edit_and_a_command_go_the_usual_way(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    rows: Rows,
) -> None:
    first = text(paid_room, BUYER, "helo")
    edit = text(paid_room, BUYER, "* hello")
    edit["content"]["m.new_content"] = {"msgtype": "m.text", "body": "hello"}
    edit["content"]["m.relates_to"] = {"rel_type": "m.replace", "event_id": first["event_id"]}
    await said_and_done(db, worker, intake, first, edit)
    assert worked_out(metrics) == 0
    assert len(await rows.outbox("message.edited")) == 1


async def test_a_message_that_cannot_be_decided_is_parked_the_usual_way(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    paid_room: RoomId,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in deciding never fails the push (which Synapse would send again and again)."""
    await said_and_done(db, worker, intake, text(paid_room, BUYER, "hello"))

    def choke(*_: object) -> None:
        raise KeyError("a field nobody expected")

    monkeypatch.setattr("bridge.homeserver.decisions.related_event_id", choke)
    said = text(paid_room, BUYER, "an innocent-looking message")
    await push(intake, said)  # answered: stored, not failed
    assert worked_out(metrics) == 0

    async def parked() -> bool:
        return (await statuses(db))[said["event_id"]][0] == "dead"

    await eventually(parked)
