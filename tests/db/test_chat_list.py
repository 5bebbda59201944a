"""The chat list and GET transaction in one query each, on both backends, whatever the user's
room count: the same chats, summaries and order the per-room queries gave."""

from __future__ import annotations

from typing import Any

import pytest
from mautrix.util.async_db import Database

from bridge.market.chat_list import ChatList
from bridge.market.records.transactions import TransactionRecords
from bridge.runtime.clock import SystemClock
from policy.ids import MarketUserId, TransactionId, UserId
from policy.retention import KEEP_FOREVER
from policy.states import DisputeState, TransactionState

ME, OTHER = "@me:localhost", "@other:localhost"


class CountingDatabase:
    """The database, counting the statements sent through it (a connection taken from the
    pool would bypass the count, so taking one fails the test)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.statements = 0

    def __getattr__(self, name: str) -> Any:
        if name in ("fetch", "fetchrow", "fetchval", "execute", "executemany"):
            self.statements += 1
            return getattr(self._db, name)
        if name == "acquire":
            raise AssertionError("a connection taken: statements through it are not counted")
        return getattr(self._db, name)


async def seed(db: Database, rooms: int) -> None:
    """``rooms`` transactions of 'me' (buyer in even ones), every third with a dispute; two
    messages a room (the latest from the other party, in every fifth room deleted); 'me' read
    the first message of every other room."""
    for user, matrix_id in (("me", ME), ("other", OTHER), ("nobody", "@nobody:localhost")):
        await db.execute(
            "INSERT INTO marketplace_users (user_id, matrix_id, created_at) VALUES ($1, $2, 0)",
            user,
            matrix_id,
        )
    for n in range(rooms):
        buyer, seller = ("me", "other") if n % 2 == 0 else ("other", "me")
        room = f"!t{n}:localhost"
        await db.execute(
            "INSERT INTO transactions (transaction_id, title, buyer_id, seller_id, state,"
            " room_id, room_version, created_at, paid_at) VALUES ($1, 'Bike', $2, $3, 'paid',"
            " $4, '12', $5, $5)",
            f"tx-{n:03d}",
            buyer,
            seller,
            room,
            1000 + n * 10,
        )
        await message(db, room, f"$a{n}", ME, 2000 + n, f"hello {n}")
        await message(db, room, f"$b{n}", OTHER, 3000 + n, f"reply {n}", deleted=n % 5 == 0)
        if n % 2:
            await db.execute(
                "INSERT INTO read_positions (room_id, user_id, event_id, ts, updated_at)"
                " VALUES ($1, $2, $3, $4, 0)",
                room,
                ME,
                f"$a{n}",
                2000 + n,
            )
        if n % 3 == 0:
            dispute_room = f"!d{n}:localhost"
            await db.execute(
                "INSERT INTO disputes (dispute_id, transaction_id, reason, opened_by, state,"
                " room_id, room_version, created_at) VALUES ($1, $2, 'Broken', 'buyer', 'open',"
                " $3, '12', $4)",
                f"d-{n:03d}",
                f"tx-{n:03d}",
                dispute_room,
                1005 + n * 10,
            )
            await message(db, dispute_room, f"$d{n}", OTHER, 4000 + n, f"dispute {n}")


async def message(
    db: Database, room: str, event_id: str, sender: str, ts: int, text: str, deleted: bool = False
) -> None:
    await db.execute(
        "INSERT INTO messages (room_id, event_id, sender, ts, preview, deleted)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        room,
        event_id,
        sender,
        ts,
        "" if deleted else text,
        deleted,
    )


@pytest.mark.parametrize("rooms", [1, 30])
async def test_the_chat_list_is_one_query_whatever_the_room_count(
    db: Database, rooms: int
) -> None:
    await seed(db, rooms)
    counting = CountingDatabase(db)
    chats = await ChatList(counting).of(MarketUserId("me"))  # type: ignore[arg-type]
    assert counting.statements == 1
    assert chats is not None
    disputes = [n for n in range(rooms) if n % 3 == 0]
    assert len(chats) == rooms + len(disputes)
    # Newest first; a dispute's chat by its own creation, just after its transaction's.
    created = [chat.created_at for chat in chats]
    assert created == sorted(created, reverse=True)
    n = rooms - 1
    newest = chats[0] if n % 3 else chats[1]
    assert newest.transaction_id == f"tx-{n:03d}" and newest.dispute_id is None
    assert newest.role == ("buyer" if n % 2 == 0 else "seller")
    for chat in chats:
        n = int(chat.transaction_id[3:])
        assert chat.counterpart is None  # only the web chat's list names the other party
        assert chat.transaction_state is TransactionState.PAID
        assert chat.open_dispute == (n % 3 == 0)
        if chat.dispute_id is not None:
            assert chat.dispute_id == f"d-{n:03d}"
            assert (chat.state, chat.reason) == (DisputeState.OPEN, "Broken")
            assert chat.room_id == f"!d{n}:localhost"
            assert (chat.summary.last_message, chat.summary.unread) == (f"dispute {n}", 1)
            continue
        assert (chat.state, chat.room_id) == (TransactionState.PAID, f"!t{n}:localhost")
        # The deleted reply is neither the last message nor unread.
        last = f"hello {n}" if n % 5 == 0 else f"reply {n}"
        assert chat.summary.last_message == last
        assert chat.summary.last_sender == (ME if n % 5 == 0 else OTHER)
        assert chat.summary.unread == (0 if n % 5 == 0 else 1)


async def test_by_matrix_id_unknown_users_and_users_without_chats(db: Database) -> None:
    await seed(db, 3)
    counting = CountingDatabase(db)
    chat_list = ChatList(counting)  # type: ignore[arg-type]
    found = await chat_list.of_matrix_id(UserId(OTHER))
    assert found is not None and found[0] == "other" and len(found[1]) == 4
    assert {chat.counterpart for chat in found[1]} == {ME}
    assert await chat_list.of(MarketUserId("nobody")) == []
    assert await chat_list.of(MarketUserId("stranger")) is None
    assert await chat_list.of_matrix_id(UserId("@stranger:localhost")) is None
    assert counting.statements == 4


async def test_get_transaction_is_one_query(db: Database) -> None:
    await seed(db, 3)
    counting = CountingDatabase(db)
    records = TransactionRecords(counting, SystemClock(), KEEP_FOREVER)  # type: ignore[arg-type]
    record = await records.get(TransactionId("tx-000"))
    assert record is not None and record.open_dispute == "d-000"
    assert counting.statements == 1
