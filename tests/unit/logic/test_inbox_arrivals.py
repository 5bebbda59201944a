"""A lone message worked out as it arrives (bridge.homeserver.arrivals): decided from what
the inbox worker kept of its sender's last message, stored as done with its writes in one
statement before the homeserver is answered; and, whenever what was kept no longer holds
(the transaction changed, another replica stored a message of the sender or changed their
mute, something of the room is pending), nothing of that statement kept and the message
worked out the usual way, as if nothing had been kept."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

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


@dataclass
class Chat:
    """A paid transaction's room, its pushes taken in by the intake of a running worker."""

    db: Database
    intake: HomeserverIntake
    worker: InboxWorker
    metrics: Metrics
    rows: Rows
    room: RoomId

    def message(self, sender: str, body: str, at_s: float = 0) -> dict:
        return text(self.room, sender, body, ts=START_MS + int(at_s * 1000))

    async def said(self, *events: dict) -> None:
        """Pushed one at a time, each worked out (either way) before the next."""
        for event in events:
            await push(self.intake, event)
            await all_done(self.db, event)
            await self.worker.settled()

    @property
    def worked_out(self) -> float:
        """Messages worked out as they arrived."""
        return sample(self.metrics, "bridge_inbox_events_received_total", {"status": "worked_out"})

    async def muted_for(self) -> str:
        """The event the sender's mute was planned for."""
        (mute,) = [p for p in await self.rows.planned() if p["kind"] == "mute"]
        return mute["key"].removeprefix("mute:")

    async def stored_elsewhere(self, event: dict, status: str = "done") -> None:
        """Stored by another replica (and worked out there, if done): never seen here."""
        await self.db.execute(
            "INSERT INTO inbox_events (event_id, room_id, event_type, sender,"
            " origin_server_ts, event_json, status, txn_id, received_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, 'elsewhere', 0)",
            event["event_id"],
            event["room_id"],
            event["type"],
            event["sender"],
            event["origin_server_ts"],
            json.dumps(event),
            status,
        )


@pytest.fixture
def chat(
    db: Database,
    intake: HomeserverIntake,
    worker: InboxWorker,
    running: asyncio.Task,
    metrics: Metrics,
    rows: Rows,
    paid_room: RoomId,
) -> Chat:
    return Chat(db, intake, worker, metrics, rows, paid_room)


async def test_a_senders_next_messages_are_worked_out_as_they_arrive(
    chat: Chat, wakeups: Wakeups, reads: list[RoomId]
) -> None:
    first = chat.message(BUYER, "hello")
    await chat.said(first)  # handed over: its sender is kept
    reset(wakeups)
    later = [chat.message(BUYER, f"offer {n}", at_s=n * 4) for n in (1, 2)]
    for event in later:
        await push(chat.intake, event)
        # Done when the push is answered: no wake-up, no task, no read.
        assert (await statuses(chat.db))[event["event_id"]] == ("done", None)
    assert wakeups.inbox.sets == 0  # type: ignore[attr-defined]
    assert not chat.worker._rooms and reads == []
    assert chat.worked_out == 2
    said = [e["event_id"] for e in (first, *later)]
    assert await webhook_events(chat.db) == said
    rows = await chat.db.fetch("SELECT event_id FROM messages ORDER BY ts")
    assert [r["event_id"] for r in rows] == said


async def test_each_party_is_kept_apart(chat: Chat) -> None:
    await chat.said(chat.message(BUYER, "hi"), chat.message(SELLER, "hello"))
    await chat.said(chat.message(BUYER, "still there?"), chat.message(SELLER, "yes"))
    assert chat.worked_out == 2


async def test_a_flood_is_judged_the_usual_way_from_the_whole_history(chat: Chat) -> None:
    # flood_messages is 3 in 10 s (conftest): the fourth message within the window floods.
    messages = [chat.message(BUYER, f"buy {n}", at_s=n) for n in range(4)]
    await chat.said(*messages)
    assert chat.worked_out == 2  # the second and the third
    assert await chat.muted_for() == messages[-1]["event_id"]


async def test_a_contact_split_across_kept_messages_is_found(chat: Chat) -> None:
    parts = ["call me on 0791", "thanks", "112 3456 ok"]
    messages = [chat.message(SELLER, part, at_s=n * 20) for n, part in enumerate(parts)]
    await chat.said(*messages)
    assert chat.worked_out == 1  # the second: the third breaks a rule
    (violation,) = await chat.rows.outbox("policy.violation")
    data = json.loads(violation["body"])["data"]
    assert data["event_id"] == messages[-1]["event_id"]
    assert [v["rule"] for v in data["violations"]] == ["contact_details"]


async def test_a_transaction_changed_since_is_read_again(chat: Chat, market: Market) -> None:
    await chat.said(chat.message(BUYER, "hello"))
    await market.transactions.close(TransactionId("order-1"), Outcome.COMPLETED)
    late = chat.message(BUYER, "one more thing", at_s=1)
    await chat.said(late)
    assert chat.worked_out == 0  # judged from the transaction as it is now
    assert late["event_id"] in await webhook_events(chat.db)


@pytest.mark.parametrize(
    ("stored_first", "at_s"),
    [
        (False, 0),  # stored after the kept one, sent in the same millisecond
        (True, 5),  # stored before it, sent after it (clocks differ between servers)
    ],
)
async def test_a_message_another_replica_stored_is_counted(
    chat: Chat, stored_first: bool, at_s: float
) -> None:
    """The kept history lacks messages another replica stored since, and those stored
    before but sent after the message it was read with (a read counts only what was sent
    before)."""
    elsewhere = [chat.message(BUYER, f"buy {n}", at_s=at_s) for n in (1, 2)]
    kept = chat.message(BUYER, "buy 0")
    if not stored_first:
        await chat.said(kept)
    for event in elsewhere:
        await chat.stored_elsewhere(event)
    if stored_first:
        await chat.said(kept)
    fourth = chat.message(BUYER, "buy 3", at_s=6)
    await chat.said(fourth)  # kept: two messages in the window; in fact four
    assert chat.worked_out == 0
    assert await chat.muted_for() == fourth["event_id"]


async def test_a_mute_lifted_elsewhere_is_read_again(chat: Chat) -> None:
    """Kept muted, a sender's flood is not punished again; lifted by another replica, it
    is."""
    await chat.db.execute(
        "INSERT INTO mutes (room_id, user_id, until) VALUES ($1, $2, $3)",
        chat.room,
        BUYER,
        START_MS + 3_600_000,
    )
    messages = [chat.message(BUYER, f"buy {n}", at_s=n) for n in range(4)]
    await chat.said(*messages[:3])
    assert chat.worked_out == 2
    await chat.db.execute("DELETE FROM mutes")
    await chat.said(messages[3])
    assert chat.worked_out == 2
    assert await chat.muted_for() == messages[3]["event_id"]


async def test_behind_a_pending_event_of_the_room_the_message_waits_its_turn(
    chat: Chat,
) -> None:
    first = chat.message(BUYER, "hello")
    await chat.said(first)
    other = chat.message(SELLER, "hi", at_s=0.5)
    await chat.stored_elsewhere(other, "pending")  # not worked out yet
    second = chat.message(BUYER, "how are you?", at_s=1)
    await chat.said(second)
    assert chat.worked_out == 0
    said = [e["event_id"] for e in (first, other, second)]
    assert await webhook_events(chat.db) == said


async def test_a_transaction_sent_again_changes_nothing(chat: Chat) -> None:
    first, second = chat.message(BUYER, "hello"), chat.message(BUYER, "hello again")
    await chat.said(first)
    await push(chat.intake, second)
    await chat.said(second)  # no answer reached the homeserver: it sends it again
    assert chat.worked_out == 1
    assert await webhook_events(chat.db) == [first["event_id"], second["event_id"]]


async def test_an_edit_goes_the_usual_way(chat: Chat) -> None:
    first = chat.message(BUYER, "helo")
    edit = chat.message(BUYER, "* hello")
    edit["content"]["m.new_content"] = {"msgtype": "m.text", "body": "hello"}
    edit["content"]["m.relates_to"] = {"rel_type": "m.replace", "event_id": first["event_id"]}
    await chat.said(first, edit)
    assert chat.worked_out == 0  # its target's sender is read
    assert len(await chat.rows.outbox("message.edited")) == 1


async def test_a_message_that_cannot_be_decided_is_parked_the_usual_way(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in deciding never fails the push (which Synapse would send again and again)."""
    await chat.said(chat.message(BUYER, "hello"))

    def choke(*_: object) -> None:
        raise KeyError("a field nobody expected")

    monkeypatch.setattr("bridge.homeserver.decisions.related_event_id", choke)
    said = chat.message(BUYER, "an innocent-looking message")
    await push(chat.intake, said)  # answered: stored, not failed
    assert chat.worked_out == 0

    async def parked() -> bool:
        return (await statuses(chat.db))[said["event_id"]][0] == "dead"

    await eventually(parked)
