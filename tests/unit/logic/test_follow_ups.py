"""Deals that do not stall: unread reminders, nudges, escalation and an automatic dispute,
fired by the follow-up worker as the fake clock moves; responsiveness from the exchanges the
inbox worker records. Messages and reads go through the inbox (store, then the inbox worker)
as the homeserver's would; `FollowUpWorker.drain` is called by hand, never `run`."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest
from mautrix.util.async_db import Database

from appservice.matrix import MatrixError
from appservice.transactions import Receipt, Transaction, parse_room_event
from bridge.config import Config
from bridge.deals.records import FollowUps
from bridge.deals.responsiveness import Responsiveness
from bridge.deals.tracker import DealTracker
from bridge.deals.worker import LEASE_MS, MAX_ATTEMPTS, FollowUpWorker
from bridge.homeserver.inbox import InboxStore
from bridge.homeserver.inbox_worker import InboxWorker
from bridge.market import Market
from bridge.market.models import NewDispute
from bridge.runtime.metrics import Metrics
from bridge.runtime.workers import Wakeups
from policy.follow_ups import Delays, iso
from policy.ids import DisputeId, MarketUserId, RoomId, TransactionId
from policy.states import DisputeState, Outcome

from .conftest import (
    BUYER,
    SELLER,
    Rows,
    build_enforcer,
    build_runner,
    look,
    new_transaction,
)
from .fakes import START_MS, FakeClock, FakeMatrix

ORDER = TransactionId("order-1")
MINUTE, HOUR = 60, 3600
MINUTE_MS, HOUR_MS = 60_000, 3_600_000
BUYER_JSON = {"user_id": "u-buyer", "matrix_id": BUYER, "role": "buyer"}
SELLER_JSON = {"user_id": "u-seller", "matrix_id": SELLER, "role": "seller"}
_ids = itertools.count(1)


class Deal:
    """A paid transaction's room, the inbox worker with a deal tracker on these delays, and
    follow-up workers (each `worker()` is a new one, as another process would be)."""

    def __init__(
        self,
        delays: Delays,
        room: RoomId,
        config: Config,
        db: Database,
        market: Market,
        matrix: FakeMatrix,
        inbox: InboxStore,
        clock: FakeClock,
        metrics: Metrics,
        wakeups: Wakeups,
    ) -> None:
        self.delays, self.room = delays, room
        self._config, self._db, self._market, self._matrix = config, db, market, matrix
        self._inbox, self._clock, self.metrics, self._wakeups = inbox, clock, metrics, wakeups
        self.refreshed: list[RoomId] = []
        freeze = config.disputes.freeze_transaction_room
        self.inbox_worker = InboxWorker(
            db,
            config.bot_mxid,
            market.planner.admins,
            config.webhooks.retry_for_seconds * 1000,
            build_enforcer(config, market),
            build_runner(config, market, matrix, inbox, db, clock),
            market.management,
            clock,
            metrics,
            wakeups,
            DealTracker(delays, freeze, metrics),
            market.planner.links,
        )

    def worker(self) -> FollowUpWorker:
        config, market = self._config, self._market
        return FollowUpWorker(
            self._db,
            self.delays,
            market.disputes,
            config.bot_mxid,
            market.planner.admins,
            config.disputes.freeze_transaction_room,
            market.planner.links,
            config.webhooks.retry_for_seconds * 1000,
            self._clock,
            self.metrics,
            self._wakeups,
            asyncio.Event(),
            self.refresh_reads,
        )

    async def refresh_reads(self, room_id: RoomId) -> None:
        """As the bridge does it (bridge.app): the homeserver's receipts, stored."""
        self.refreshed.append(room_id)
        receipts = await self._matrix.read_receipts(room_id)
        await self._inbox.store_transaction(Transaction(f"reads:{room_id}", [], receipts))

    async def say(
        self, sender: str, body: str, msgtype: str = "m.text", *, edits: str | None = None
    ) -> str:
        """A message (or an edit of ``edits``) sent now, stored and processed."""
        content: dict[str, Any] = {"msgtype": msgtype, "body": body}
        if edits is not None:
            new_content = {"msgtype": msgtype, "body": body}
            content = {
                "msgtype": msgtype,
                "body": f"* {body}",
                "m.new_content": new_content,
                "m.relates_to": {"rel_type": "m.replace", "event_id": edits},
            }
        event = {
            "type": "m.room.message",
            "event_id": f"$deal{next(_ids)}",
            "room_id": self.room,
            "sender": sender,
            "origin_server_ts": self._clock.now_ms(),
            "content": content,
        }
        txn = Transaction(f"txn{next(_ids)}", [parse_room_event(event)], [])
        await self._inbox.store_transaction(txn)
        await self.inbox_worker.drain()
        return event["event_id"]

    async def read(
        self, reader: str, event_id: str, ts: int | None = None, *, process: bool = True
    ) -> None:
        """The reader's receipt for ``event_id`` (read at ``ts``, by default now), as the
        homeserver pushes it."""
        receipt = Receipt(self.room, reader, event_id, ts or self._clock.now_ms())
        await self._inbox.store_transaction(Transaction(f"txn{next(_ids)}", [], [receipt]))
        if process:
            await self.inbox_worker.drain()

    async def follow_ups(self) -> list[dict[str, Any]]:
        rows = await self._db.fetch(
            "SELECT kind, user_id, event_id, started_at, due_at, status, fired, attempts,"
            " last_error FROM follow_ups ORDER BY seq"
        )
        return [dict(row) for row in rows]

    def counted(self, kind: str, outcome: str) -> float:
        labels = {"kind": kind, "outcome": outcome}
        return self.metrics.registry.get_sample_value("bridge_follow_ups_total", labels) or 0.0


@pytest.fixture
async def deals(
    config: Config,
    db: Database,
    market: Market,
    matrix: FakeMatrix,
    inbox: InboxStore,
    clock: FakeClock,
    metrics: Metrics,
    wakeups: Wakeups,
):
    """Opens the paid transaction's room with these delays."""
    await market.transactions.create(new_transaction())
    record = await market.transactions.record_payment(ORDER)
    assert record.room_id is not None

    def open_deal(delays: Delays, room: RoomId | None = None) -> Deal:
        """The deal in the paid transaction's room, or in ``room`` (`other_room`)."""
        room = room or record.room_id
        return Deal(delays, room, config, db, market, matrix, inbox, clock, metrics, wakeups)

    return open_deal


@pytest.fixture
async def other_room(market: Market) -> RoomId:
    """A second paid transaction's room."""
    await market.transactions.create(new_transaction("order-2", "Desk lamp"))
    record = await market.transactions.record_payment(TransactionId("order-2"))
    assert record.room_id is not None
    return record.room_id


async def data_of(rows: Rows, type_: str) -> list[dict[str, Any]]:
    return [json.loads(row["body"])["data"] for row in await rows.outbox(type_)]


async def reminders(rows: Rows, recipient: str | None = None) -> list[dict[str, Any]]:
    found = await data_of(rows, "message.unread_reminder")
    return [d for d in found if recipient is None or d["recipient"]["matrix_id"] == recipient]


# --- unread reminders -----------------------------------------------------------------------


async def test_an_unread_message_reminds_the_seller_once_after_unread_after_not_before(
    deals, clock: FakeClock, rows: Rows, wakeups: Wakeups
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    first = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(2 * MINUTE)
    second = await deal.say(BUYER, "I could pick it up on Saturday.")
    worker = deal.worker()

    clock.advance(8 * MINUTE - 1)  # 10 minutes after the first message, less a second
    await worker.drain()
    assert await reminders(rows) == []

    clock.advance(1)
    await worker.drain()
    (row,) = await rows.outbox("message.unread_reminder")
    assert row["stream"] == deal.room and row["status"] == "pending"
    body = json.loads(row["body"])
    assert body["occurred_at"] == iso(START_MS + 10 * MINUTE_MS)
    data = body["data"]
    assert data["recipient"] == SELLER_JSON
    assert (data["room_id"], data["room_kind"], data["transaction_id"]) == (
        deal.room,
        "transaction",
        ORDER,
    )
    assert data["unread"] == 2
    assert data["waiting_since"] == iso(START_MS) == "2027-01-15T08:00:00.000Z"
    assert data["latest"] == {
        "event_id": second,
        "sender": BUYER_JSON,
        "preview": "I could pick it up on Saturday.",
        "sent_at": iso(START_MS + 2 * MINUTE_MS),
    }
    assert data["links"]["matrix_to"].startswith("https://matrix.to/#/%23")
    assert data["reminder"] == 1
    assert wakeups.outbox.sets >= 1  # type: ignore[attr-defined]
    # The burst's reminder hangs on its first message; it fired and waits for a read.
    (follow_up,) = await deal.follow_ups()
    assert (follow_up["kind"], follow_up["user_id"], follow_up["event_id"]) == (
        "unread_reminder",
        SELLER,
        first,
    )
    assert (follow_up["status"], follow_up["fired"]) == ("waiting", 1)
    assert deal.refreshed == [deal.room]  # the homeserver's reads were asked for first
    assert deal.counted("unread_reminder", "fired") == 1

    clock.advance(HOUR)
    await worker.drain()
    assert len(await reminders(rows)) == 1
    assert await reminders(rows, BUYER) == []  # the sender is never reminded of their own


async def test_no_reminder_when_the_seller_read_before_the_delay(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    said = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(5 * MINUTE)
    await deal.read(SELLER, said)
    (follow_up,) = await deal.follow_ups()
    assert follow_up["status"] == "cancelled"  # the read ended the burst at once

    clock.advance(HOUR)
    await deal.worker().drain()
    assert await reminders(rows) == []
    assert deal.counted("unread_reminder", "fired") == 0


async def test_a_read_that_leaves_a_message_unread_does_not_end_the_burst(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    first = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(2 * MINUTE)
    second = await deal.say(BUYER, "And the lights?")
    # The seller read the first message a minute in; the receipt arrives now.
    await deal.read(SELLER, first, START_MS + MINUTE_MS)
    (follow_up,) = await deal.follow_ups()
    assert follow_up["status"] == "pending"

    clock.advance(10 * MINUTE)  # ten minutes after the unread one
    await deal.worker().drain()
    (data,) = await reminders(rows, SELLER)
    assert (data["unread"], data["latest"]["event_id"]) == (1, second)
    assert data["waiting_since"] == iso(START_MS + 2 * MINUTE_MS)  # the first unread one


async def test_a_burst_whose_first_message_was_read_is_reminded_a_delay_after_the_next(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    first = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(2 * MINUTE)
    await deal.say(BUYER, "And the lights?")
    await deal.read(SELLER, first, START_MS + MINUTE_MS)
    worker = deal.worker()

    clock.advance(8 * MINUTE)  # the first message's time: it was read, the second waited 8
    await worker.drain()
    assert await reminders(rows) == []
    (follow_up,) = await deal.follow_ups()
    assert (follow_up["status"], follow_up["due_at"]) == ("pending", START_MS + 12 * MINUTE_MS)
    assert deal.counted("unread_reminder", "postponed") == 1

    clock.advance(2 * MINUTE)
    await worker.drain()
    (data,) = await reminders(rows, SELLER)
    assert (data["unread"], data["reminder"]) == (1, 1)


async def test_no_reminder_for_the_seller_once_the_seller_replied(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    await deal.say(BUYER, "Is the bike still available?")
    clock.advance(5 * MINUTE)
    reply = await deal.say(SELLER, "Yes, it is.")  # a reply reads what came before it

    clock.advance(HOUR)
    await deal.worker().drain()
    assert await reminders(rows, SELLER) == []
    # The reply itself waits for the buyer, who is reminded of it.
    (data,) = await reminders(rows)
    assert data["recipient"] == BUYER_JSON
    assert (data["unread"], data["latest"]["event_id"]) == (1, reply)
    assert data["waiting_since"] == iso(START_MS + 5 * MINUTE_MS)


async def test_notices_and_edits_start_no_reminder(deals, clock: FakeClock, rows: Rows) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS, nudge_ms=HOUR_MS))
    notice = await deal.say(BUYER, "An automatic answer", msgtype="m.notice")
    clock.advance(MINUTE)
    await deal.say(BUYER, "An automatic answer, edited", edits=notice)
    clock.advance(2 * HOUR)
    await deal.worker().drain()
    assert len(await data_of(rows, "message.edited")) == 1  # the edit was processed
    assert await deal.follow_ups() == []
    assert await reminders(rows) == []
    assert await data_of(rows, "deal.nudge") == []


# --- one reminder per burst -----------------------------------------------------------------


async def test_one_reminder_per_burst_and_a_read_then_a_message_starts_a_new_one(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    worker = deal.worker()
    await deal.say(BUYER, "Is the bike still available?")
    clock.advance(10 * MINUTE)
    await worker.drain()
    assert len(await reminders(rows)) == 1

    clock.advance(MINUTE)
    await deal.say(BUYER, "Hello?")
    clock.advance(MINUTE)
    last = await deal.say(BUYER, "Anyone there?")
    clock.advance(HOUR)
    await worker.drain()
    assert len(await reminders(rows)) == 1  # the burst was reminded of already

    await deal.read(SELLER, last)
    clock.advance(MINUTE)
    assert [f["status"] for f in await deal.follow_ups()] == ["done"]  # fired, then read
    start = clock.now_ms()
    fresh = await deal.say(BUYER, "One more question: the frame size?")
    clock.advance(10 * MINUTE - 1)
    await worker.drain()
    assert len(await reminders(rows)) == 1

    clock.advance(1)
    await worker.drain()
    first, second = await reminders(rows)
    assert first["waiting_since"] == iso(START_MS)
    assert second["recipient"] == SELLER_JSON
    assert (second["unread"], second["latest"]["event_id"]) == (1, fresh)
    assert second["waiting_since"] == iso(start)
    assert second["reminder"] == 1  # the new burst's first
    ids = [row["id"] for row in await rows.outbox("message.unread_reminder")]
    assert len(set(ids)) == 2


async def test_with_repeat_after_the_burst_is_reminded_again_while_unread(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS, repeat_ms=HOUR_MS))
    worker = deal.worker()
    await deal.say(BUYER, "Is the bike still available?")
    clock.advance(10 * MINUTE)
    await worker.drain()
    (follow_up,) = await deal.follow_ups()
    assert (follow_up["status"], follow_up["fired"]) == ("pending", 1)
    assert follow_up["due_at"] == clock.now_ms() + HOUR_MS

    clock.advance(30 * MINUTE)
    latest = await deal.say(BUYER, "Hello?")
    clock.advance(30 * MINUTE - 1)
    await worker.drain()
    assert len(await reminders(rows)) == 1

    clock.advance(1)
    await worker.drain()
    first, second = await reminders(rows)
    assert first["reminder"] == 1 and first["unread"] == 1
    assert second["reminder"] == 2 and second["unread"] == 2
    assert second["latest"]["event_id"] == latest
    assert second["waiting_since"] == first["waiting_since"] == iso(START_MS)

    await deal.read(SELLER, latest)
    clock.advance(2 * HOUR)
    await worker.drain()
    assert len(await reminders(rows)) == 2
    (follow_up,) = await deal.follow_ups()
    assert (follow_up["status"], follow_up["fired"]) == ("done", 2)


# --- a closed room ----------------------------------------------------------------------------


async def test_a_room_closed_before_the_due_time_gets_no_reminder_nor_nudge(
    deals, market: Market, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS, nudge_ms=HOUR_MS, escalate_ms=2 * HOUR_MS))
    await deal.say(BUYER, "Is the bike still available?")
    assert {f["kind"] for f in await deal.follow_ups()} == {
        "unread_reminder",
        "nudge",
        "escalation",
    }
    clock.advance(MINUTE)
    await market.transactions.close(ORDER, Outcome.COMPLETED)  # archived
    await deal.inbox_worker.drain()

    clock.advance(3 * HOUR)
    await deal.worker().drain()
    assert await reminders(rows) == []
    assert await data_of(rows, "deal.nudge") == []
    assert await data_of(rows, "deal.escalation_due") == []
    assert await rows.audit("deal.nudge") == []
    assert {f["status"] for f in await deal.follow_ups()} == {"cancelled"}
    assert deal.counted("unread_reminder", "skipped") == 1
    assert deal.counted("nudge", "skipped") == 1


async def test_a_message_in_a_closed_room_starts_nothing(
    deals, market: Market, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS, nudge_ms=HOUR_MS))
    await market.transactions.close(ORDER, Outcome.COMPLETED)
    await deal.say(BUYER, "Thanks, it arrived.")
    clock.advance(3 * HOUR)
    await deal.worker().drain()
    assert await deal.follow_ups() == []
    assert await reminders(rows) == []
    assert await data_of(rows, "deal.nudge") == []


async def test_a_suspended_party_is_not_reminded(
    deals, db: Database, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    await deal.say(BUYER, "Is the bike still available?")
    await db.execute(
        "UPDATE marketplace_users SET suspended_at = $1 WHERE matrix_id = $2",
        clock.now_ms(),
        SELLER,
    )
    clock.advance(11 * MINUTE)
    await deal.worker().drain()
    assert await reminders(rows) == []
    (follow_up,) = await deal.follow_ups()
    assert follow_up["status"] == "cancelled"


# --- nudge, escalation, automatic dispute -------------------------------------------------


async def test_an_unanswered_buyer_is_nudged_then_escalated_then_a_dispute_opens_once_each(
    deals, market: Market, db: Database, clock: FakeClock, rows: Rows, wakeups: Wakeups
) -> None:
    deal = deals(Delays(nudge_ms=12 * HOUR_MS, escalate_ms=24 * HOUR_MS, auto_dispute=True))
    worker = deal.worker()
    asked = await deal.say(BUYER, "Has the bike shipped?")

    clock.advance(12 * HOUR - 1)
    await worker.drain()
    assert await data_of(rows, "deal.nudge") == []

    clock.advance(1)
    await worker.drain()
    await worker.drain()
    (nudge,) = await data_of(rows, "deal.nudge")
    assert (nudge["buyer"], nudge["seller"]) == (BUYER_JSON, SELLER_JSON)
    assert (nudge["room_id"], nudge["transaction_id"]) == (deal.room, ORDER)
    assert nudge["event_id"] == asked
    assert nudge["waiting_since"] == iso(START_MS)
    assert nudge["waited_seconds"] == 12 * HOUR
    (action,) = await rows.planned()
    assert (action["kind"], action["room_id"], action["status"]) == ("nudge", deal.room, "pending")
    assert json.loads(action["params"]) == {"user_id": SELLER, "waited_s": 12 * HOUR}
    (audit,) = await rows.audit("deal.nudge")
    assert (audit["room_id"], audit["subject"], audit["reason"]) == (
        deal.room,
        asked,
        "no response",
    )
    assert SELLER in audit["detail"]
    assert wakeups.actions.sets >= 1  # type: ignore[attr-defined]
    assert await data_of(rows, "deal.escalation_due") == []

    clock.advance(12 * HOUR - 1)
    await worker.drain()
    assert await data_of(rows, "deal.escalation_due") == []

    clock.advance(1)
    await worker.drain()
    (escalation,) = await data_of(rows, "deal.escalation_due")
    assert escalation["event_id"] == asked
    assert escalation["waited_seconds"] == 24 * HOUR
    assert escalation["auto_dispute"] is True
    dispute_id = escalation["dispute_id"]
    assert dispute_id.startswith("no-response-")
    dispute = await market.dispute_records.get(dispute_id)
    assert dispute is not None
    assert (dispute.reason, dispute.opened_by, dispute.state) == (
        "no response",
        "marketplace",
        DisputeState.OPEN,
    )
    assert dispute.room_id is not None  # its room was made
    assert (await market.transactions.get(ORDER)).open_dispute == dispute_id
    (escalated,) = await rows.audit("deal.escalation_due")
    assert escalated["subject"] == asked

    # Nothing fires twice, however often the worker drains or time moves on.
    for _ in range(3):
        clock.advance(HOUR)
        await worker.drain()
        await deal.worker().drain()
    assert len(await data_of(rows, "deal.nudge")) == 1
    assert len(await data_of(rows, "deal.escalation_due")) == 1
    assert len(await data_of(rows, "dispute.opened")) == 1
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 1
    assert len([a for a in await rows.planned() if a["kind"] == "nudge"]) == 1
    assert len(await rows.audit("deal.nudge")) == len(await rows.audit("deal.escalation_due")) == 1
    states = {f["kind"]: (f["status"], f["fired"]) for f in await deal.follow_ups()}
    assert states == {"nudge": ("done", 1), "escalation": ("done", 1)}


async def test_the_sellers_reply_before_the_nudge_cancels_nudge_and_escalation(
    deals, db: Database, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(nudge_ms=12 * HOUR_MS, escalate_ms=24 * HOUR_MS, auto_dispute=True))
    await deal.say(BUYER, "Has the bike shipped?")
    clock.advance(HOUR)
    await deal.say(SELLER, "Yes, this morning.")
    states = {f["kind"]: f["status"] for f in await deal.follow_ups()}
    assert states == {"nudge": "cancelled", "escalation": "cancelled"}

    clock.advance(48 * HOUR)
    await deal.worker().drain()
    assert await data_of(rows, "deal.nudge") == []
    assert await data_of(rows, "deal.escalation_due") == []
    assert await rows.planned() == []
    assert await rows.audit("deal.nudge") == []
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 0


async def test_the_sellers_reply_after_the_nudge_cancels_the_escalation(
    deals, db: Database, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(nudge_ms=12 * HOUR_MS, escalate_ms=24 * HOUR_MS, auto_dispute=True))
    worker = deal.worker()
    await deal.say(BUYER, "Has the bike shipped?")
    clock.advance(13 * HOUR)
    await worker.drain()
    assert len(await data_of(rows, "deal.nudge")) == 1
    await deal.say(SELLER, "Sorry, shipping it today.")
    clock.advance(24 * HOUR)
    await worker.drain()
    assert await data_of(rows, "deal.escalation_due") == []
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 0
    states = {f["kind"]: f["status"] for f in await deal.follow_ups()}
    assert states == {"nudge": "done", "escalation": "cancelled"}


async def test_a_dispute_opened_meanwhile_stops_the_escalation(
    deals, market: Market, db: Database, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(nudge_ms=12 * HOUR_MS, escalate_ms=24 * HOUR_MS, auto_dispute=True))
    await deal.say(BUYER, "Has the bike shipped?")
    clock.advance(HOUR)
    await market.disputes.open(NewDispute(DisputeId("d-1"), ORDER, "not shipped", "buyer"))
    await deal.inbox_worker.drain()
    clock.advance(48 * HOUR)
    await deal.worker().drain()
    assert await data_of(rows, "deal.nudge") == []
    assert await data_of(rows, "deal.escalation_due") == []
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 1


async def test_an_automatic_dispute_the_homeserver_could_not_make_is_finished_on_retry(
    deals, market: Market, matrix: FakeMatrix, db: Database, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(nudge_ms=HOUR_MS, escalate_ms=2 * HOUR_MS, auto_dispute=True))
    worker = deal.worker()
    await deal.say(BUYER, "Has the bike shipped?")
    clock.advance(HOUR)
    await worker.drain()  # the nudge
    clock.advance(HOUR)
    matrix.down = True
    await worker.drain()
    (escalation,) = await data_of(rows, "deal.escalation_due")
    dispute = await market.dispute_records.get(escalation["dispute_id"])
    assert dispute is not None and dispute.room_id is None  # stored; its room not made yet
    escalated = next(f for f in await deal.follow_ups() if f["kind"] == "escalation")
    assert (escalated["status"], escalated["fired"]) == ("pending", 1)
    assert escalated["due_at"] > clock.now_ms()  # retried after a backoff

    matrix.down = False
    clock.advance(10 * MINUTE)
    await deal.worker().drain()  # another process, say
    dispute = await market.dispute_records.get(escalation["dispute_id"])
    assert dispute is not None and dispute.room_id is not None
    assert len(await data_of(rows, "deal.escalation_due")) == 1  # its webhook went out once
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 1
    escalated = next(f for f in await deal.follow_ups() if f["kind"] == "escalation")
    assert escalated["status"] == "done"
    assert deal.counted("escalation", "resumed") == 1


async def test_a_dispute_the_homeserver_refuses_is_retried_then_parked_and_stops_no_other(
    deals, market: Market, matrix: FakeMatrix, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(
        Delays(
            unread_ms=2 * HOUR_MS + MINUTE_MS,  # due after the escalation, in the same round
            nudge_ms=HOUR_MS,
            escalate_ms=2 * HOUR_MS,
            auto_dispute=True,
        )
    )
    worker = deal.worker()
    await deal.say(BUYER, "Has the bike shipped?")
    refused = [MatrixError(403, "M_FORBIDDEN", "not allowed") for _ in range(MAX_ATTEMPTS + 5)]
    matrix.fail("create_room", *refused)
    clock.advance(3 * HOUR)
    await worker.drain()  # the dispute's room is refused; the reminder after it still fires
    assert len(await reminders(rows)) == 1
    (escalation,) = await data_of(rows, "deal.escalation_due")
    escalated = next(f for f in await deal.follow_ups() if f["kind"] == "escalation")
    assert (escalated["status"], escalated["attempts"]) == ("pending", 1)
    assert escalated["due_at"] > clock.now_ms()  # after a backoff
    assert "M_FORBIDDEN" in escalated["last_error"]

    for _ in range(2 * MAX_ATTEMPTS):
        clock.advance(301)  # past the longest backoff
        await worker.drain()
    escalated = next(f for f in await deal.follow_ups() if f["kind"] == "escalation")
    assert (escalated["status"], escalated["attempts"]) == ("cancelled", MAX_ATTEMPTS)
    assert "M_FORBIDDEN" in escalated["last_error"]
    assert len(await data_of(rows, "deal.escalation_due")) == 1
    dispute = await market.dispute_records.get(escalation["dispute_id"])
    assert dispute is not None and dispute.room_id is None  # stored; its room never made


# --- rooms side by side --------------------------------------------------------------------


async def reminders_due_in_two_rooms(
    deals, other_room: RoomId, clock: FakeClock
) -> tuple[Deal, Deal]:
    """A reminder due in the fixture's room, and a later one in ``other_room``."""
    delays = Delays(unread_ms=10 * MINUTE_MS)
    first, other = deals(delays), deals(delays, other_room)
    await first.say(BUYER, "Is the bike still available?")
    clock.advance(1)
    await other.say(BUYER, "Is the lamp still available?")
    clock.advance(HOUR)
    return first, other


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
async def test_a_room_waiting_on_the_homeserver_does_not_hold_another_rooms_reminder(
    deals, other_room: RoomId, clock: FakeClock, rows: Rows
) -> None:
    first, other = await reminders_due_in_two_rooms(deals, other_room, clock)
    other_asked = asyncio.Event()

    async def refresh_reads(room_id: RoomId) -> None:
        if room_id == first.room:  # answers only once the other room's turn has come
            await other_asked.wait()
        else:
            other_asked.set()
        await Deal.refresh_reads(first, room_id)

    first.refresh_reads = refresh_reads  # type: ignore[method-assign]
    async with asyncio.timeout(10):  # one room at a time would wait here for ever
        await first.worker().drain()
    assert {r["room_id"] for r in await reminders(rows)} == {first.room, other.room}


async def test_a_room_that_fails_stops_no_other_and_the_failure_is_raised_after(
    deals, other_room: RoomId, clock: FakeClock, rows: Rows
) -> None:
    first, other = await reminders_due_in_two_rooms(deals, other_room, clock)

    async def refresh_reads(room_id: RoomId) -> None:
        if room_id == first.room:
            raise RuntimeError("a bug")
        await Deal.refresh_reads(first, room_id)

    first.refresh_reads = refresh_reads  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="a bug"):
        await first.worker().drain()
    assert [r["room_id"] for r in await reminders(rows)] == [other.room]


@pytest.mark.parametrize("db", ["sqlite", "postgres"], indirect=True)
async def test_the_watch_wakes_the_worker_once_a_follow_up_comes_due(
    deals, clock: FakeClock, wakeups: Wakeups, db: Database
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS, nudge_ms=HOUR_MS, escalate_ms=2 * HOUR_MS))
    worker = deal.worker()
    await deal.say(BUYER, "Is the bike still available?")
    await look(db, clock, worker.due)
    assert wakeups.follow_ups.sets == 0  # type: ignore[attr-defined]
    clock.advance(10 * MINUTE)
    await look(db, clock, worker.due)
    assert wakeups.follow_ups.sets == 1  # type: ignore[attr-defined]


# --- a worker that was down; several workers --------------------------------------------------


async def test_a_worker_that_was_down_fires_what_came_due_once(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS, nudge_ms=HOUR_MS, escalate_ms=2 * HOUR_MS))
    deal.worker()  # the process that was running, then went down without draining
    asked = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(3 * HOUR)

    await deal.worker().drain()  # the process that came back
    (reminder,) = await reminders(rows)
    assert reminder["recipient"] == SELLER_JSON
    (nudge,) = await data_of(rows, "deal.nudge")
    assert nudge["waited_seconds"] == 3 * HOUR  # the time actually waited
    (escalation,) = await data_of(rows, "deal.escalation_due")
    assert escalation["event_id"] == asked and escalation["auto_dispute"] is False

    another = deal.worker()
    await another.drain()  # at the same time
    clock.advance(HOUR)
    await another.drain()  # and later
    assert len(await reminders(rows)) == 1
    assert len(await data_of(rows, "deal.nudge")) == 1
    assert len(await data_of(rows, "deal.escalation_due")) == 1
    assert len(await rows.planned()) == 1
    assert all(f["attempts"] == 1 for f in await deal.follow_ups())


async def test_a_read_pushed_while_the_worker_was_down_means_no_reminder(
    deals, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    said = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(5 * MINUTE)
    await deal.read(SELLER, said, process=False)  # stored; the inbox worker is behind
    clock.advance(HOUR)

    worker = deal.worker()
    await worker.drain()  # the room has an event not processed yet: it waits for it
    assert await reminders(rows) == []
    assert [f["status"] for f in await deal.follow_ups()] == ["pending"]

    await deal.inbox_worker.drain()
    await worker.drain()
    assert await reminders(rows) == []
    assert [f["status"] for f in await deal.follow_ups()] == ["cancelled"]


async def test_a_read_the_homeserver_dropped_is_fetched_and_the_stale_reminder_skipped(
    deals, matrix: FakeMatrix, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    said = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(5 * MINUTE)
    # The seller read it while the bridge was away; Synapse never pushed the receipt.
    matrix.receipts[deal.room] = [Receipt(deal.room, SELLER, said, clock.now_ms())]
    clock.advance(HOUR)

    await deal.worker().drain()
    assert deal.refreshed == [deal.room]
    assert await reminders(rows) == []
    assert [f["status"] for f in await deal.follow_ups()] == ["cancelled"]
    assert deal.counted("unread_reminder", "skipped") == 1
    await deal.inbox_worker.drain()  # the fetched read is notified in order too
    (read,) = await data_of(rows, "message.read")
    assert (read["reader"], read["unread"]) == (SELLER_JSON, 0)


async def test_a_reminder_fires_when_the_homeserver_cannot_be_asked_for_reads(
    deals, matrix: FakeMatrix, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    await deal.say(BUYER, "Is the bike still available?")
    clock.advance(HOUR)
    matrix.down = True
    await deal.worker().drain()
    assert len(await reminders(rows)) == 1  # going by the reads stored


async def test_a_lease_of_a_process_that_stopped_runs_out_then_another_fires_once(
    deals, db: Database, clock: FakeClock, rows: Rows
) -> None:
    deal = deals(Delays(unread_ms=10 * MINUTE_MS))
    await deal.say(BUYER, "Is the bike still available?")
    clock.advance(10 * MINUTE)
    now = clock.now_ms()
    (due,) = await FollowUps(db).due(now, 10)
    assert await FollowUps(db).claim(due.seq, now, now + LEASE_MS)  # then that process died

    await deal.worker().drain()
    assert await reminders(rows) == []  # held by the other process
    clock.advance(LEASE_MS / 1000 + 1)
    await deal.worker().drain()
    assert len(await reminders(rows)) == 1
    (follow_up,) = await deal.follow_ups()
    assert (follow_up["status"], follow_up["attempts"]) == ("waiting", 2)


async def test_two_workers_draining_at_once_fire_each_follow_up_once(
    deals, db: Database, clock: FakeClock, rows: Rows, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both workers find the same follow-ups due before either claims one (each round of
    # `due` waits for the other worker's), and each claim's answer is kept.
    both_found = asyncio.Barrier(2)
    due, claim = FollowUps.due, FollowUps.claim
    claims: list[bool] = []

    async def due_together(self: FollowUps, now: int, limit: int) -> list[Any]:
        found = await due(self, now, limit)
        await both_found.wait()
        return found

    async def counted_claim(self: FollowUps, seq: int, now: int, until: int) -> bool:
        taken = await claim(self, seq, now, until)
        claims.append(taken)
        return taken

    monkeypatch.setattr(FollowUps, "due", due_together)
    monkeypatch.setattr(FollowUps, "claim", counted_claim)
    deal = deals(
        Delays(
            unread_ms=10 * MINUTE_MS,
            nudge_ms=HOUR_MS,
            escalate_ms=2 * HOUR_MS,
            auto_dispute=True,
        )
    )
    one, two = deal.worker(), deal.worker()
    await deal.say(BUYER, "Is the bike still available?")
    clock.advance(30 * MINUTE)
    await asyncio.gather(one.drain(), two.drain())
    assert len(await reminders(rows)) == 1
    assert claims == [True, False]  # both saw it due; one took it

    clock.advance(3 * HOUR)
    await asyncio.gather(one.drain(), two.drain())
    await asyncio.gather(one.drain(), two.drain())
    assert len(await reminders(rows)) == 1
    assert len(await data_of(rows, "deal.nudge")) == 1
    assert len(await data_of(rows, "deal.escalation_due")) == 1
    assert len(await data_of(rows, "dispute.opened")) == 1
    assert await db.fetchval("SELECT COUNT(*) FROM disputes") == 1
    assert len(await rows.planned()) == 1
    follow_ups = await deal.follow_ups()
    assert [(f["kind"], f["fired"], f["attempts"]) for f in follow_ups] == [
        ("unread_reminder", 1, 1),
        ("nudge", 1, 1),
        ("escalation", 1, 1),
    ]
    fired = sum(deal.counted(kind, "fired") for kind in ("unread_reminder", "nudge", "escalation"))
    assert fired == 3
    assert claims.count(True) == claims.count(False) == 3  # each taken by one, lost by one


# --- responsiveness through the tracker -----------------------------------------------------


async def test_exchanges_from_a_conversation_give_each_partys_figures(
    deals, db: Database, clock: FakeClock, metrics: Metrics
) -> None:
    deal = deals(Delays())  # no follow-ups: exchanges are recorded all the same
    figures = Responsiveness(db)
    asked = await deal.say(BUYER, "Is the bike still available?")
    clock.advance(10 * MINUTE)
    await deal.say(BUYER, "I could pick it up on Saturday.")  # still the same exchange
    clock.advance(HOUR)
    await deal.say(SELLER, "Out of office", msgtype="m.notice")  # an automatic reply: no answer
    clock.advance(50 * MINUTE)
    answer = await deal.say(SELLER, "Yes, Saturday works.")  # 2 h after the first question
    clock.advance(HOUR)
    thanks = await deal.say(BUYER, "Great, see you then.")  # answers the seller 1 h later

    rows = await db.fetch(
        "SELECT responder, role, event_id, started_at, answered_at FROM exchanges ORDER BY seq"
    )
    assert [tuple(row) for row in rows] == [
        (SELLER, "seller", asked, START_MS, START_MS + 2 * HOUR_MS),
        (BUYER, "buyer", answer, START_MS + 2 * HOUR_MS, START_MS + 3 * HOUR_MS),
        (SELLER, "seller", thanks, START_MS + 3 * HOUR_MS, None),
    ]
    seller = await figures.of_user(MarketUserId("u-seller"), 0, clock.now_ms())
    assert seller is not None and seller.matrix_id == SELLER
    as_seller = seller.as_seller
    assert (as_seller.exchanges, as_seller.answered, as_seller.pending) == (2, 1, 1)
    assert as_seller.reply_rate_24h == 1.0  # the pending one is left out
    assert as_seller.median_response_seconds == as_seller.mean_response_seconds == 7200
    assert seller.as_buyer.exchanges == 0 and seller.as_buyer.reply_rate_24h is None
    buyer = await figures.of_user(MarketUserId("u-buyer"), 0, clock.now_ms())
    assert buyer is not None
    assert buyer.as_buyer.median_response_seconds == 3600
    assert buyer.as_buyer.reply_rate_24h == 1.0
    assert await figures.of_user(MarketUserId("u-nobody"), 0, clock.now_ms()) is None
    histogram = "bridge_first_response_seconds_sum"
    assert metrics.registry.get_sample_value(histogram, {"role": "seller"}) == 7200
    assert metrics.registry.get_sample_value(histogram, {"role": "buyer"}) == 3600

    # The seller answers the last message 25 hours later: answered, not within 24 h.
    clock.advance(25 * HOUR)
    await deal.say(SELLER, "Sorry, I was away.")
    seller = await figures.of_user(MarketUserId("u-seller"), 0, clock.now_ms())
    assert seller is not None
    as_seller = seller.as_seller
    assert (as_seller.exchanges, as_seller.answered, as_seller.answered_within_24h) == (2, 2, 1)
    assert as_seller.pending == 0 and as_seller.reply_rate_24h == 0.5
    assert as_seller.median_response_seconds == as_seller.mean_response_seconds == 48_600
    # Only exchanges started in the window count.
    later = await figures.of_user(MarketUserId("u-seller"), START_MS + 3 * HOUR_MS, clock.now_ms())
    assert later is not None and later.as_seller.exchanges == 1
    assert later.as_seller.reply_rate_24h == 0.0
