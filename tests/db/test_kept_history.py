"""A sender's history kept and carried forward by their later messages
(bridge.policybot.history.KeptHistory) against the query it stands in for, on random
timelines: the same earlier messages and mute, and a flood count never below the query's
(equal once the window has moved past the read)."""

from __future__ import annotations

import json
import random

import pytest
from mautrix.util.async_db import Database

from bridge.policybot.history import History, KeptHistory, read_history
from policy.messages import shown_body
from tests.db.conftest import deal_with_dispute

FLOOD_MS = 10_000
BUYER, SELLER = "@b:localhost", "@s:localhost"
# Gaps between messages (ms): the same millisecond, within the flood window, across it,
# across the window of earlier messages (60 s).
GAPS = (0, 0, 300, 1_500, 4_000, 9_999, 10_000, 25_000, 61_000)


async def store(db: Database, n: int, sender: str, ts: int, body: str | None) -> int:
    content = {"msgtype": "m.text", **({"body": body} if body is not None else {})}
    event = {"type": "m.room.message", "sender": sender, "content": content}
    await db.execute(
        "INSERT INTO inbox_events (event_id, room_id, event_type, sender, origin_server_ts,"
        " event_json, status, txn_id, received_at) VALUES ($1, '!deal', 'm.room.message',"
        " $2, $3, $4, 'done', 't', 0)",
        f"$m{n}",
        sender,
        ts,
        json.dumps(event),
    )
    return await db.fetchval("SELECT seq FROM inbox_events WHERE event_id = $1", f"$m{n}")


async def read(db: Database, n: int, ts: int) -> History:
    event = {
        "type": "m.room.message",
        "event_id": f"$m{n}",
        "room_id": "!deal",
        "sender": BUYER,
        "origin_server_ts": ts,
    }
    async with db.acquire() as conn:
        return await read_history(conn, event, FLOOD_MS)


@pytest.mark.parametrize("seed", range(12))
async def test_a_kept_history_reads_as_the_query_would(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    await deal_with_dispute(db)
    await db.execute("INSERT INTO mutes (room_id, user_id, until) VALUES ('!deal', $1, 7)", BUYER)
    ts, n = 1_000_000, 0
    # What the buyer said before the read: more than the earlier messages' limit, at times
    # the read only counts.
    for _ in range(rng.randrange(0, 9)):
        ts += rng.choice(GAPS[:5])
        await store(db, n, BUYER, ts, f"before {n}")
        n += 1
    body = "read with"
    seq = await store(db, n, BUYER, ts, body)
    kept = KeptHistory.read(await read(db, n, ts), (ts, seq, body), FLOOD_MS)
    n += 1
    for _ in range(30):
        ts += rng.choice(GAPS)
        if rng.random() < 0.3:  # the other party: not the buyer's history
            await store(db, n, SELLER, ts, f"seller {n}")
            n += 1
        body = rng.choice(["hello", f"part {n}", "", None])
        seq = await store(db, n, BUYER, ts, body)
        exact = await read(db, n, ts)
        carried = kept.of(ts)
        assert carried is not None
        assert carried.earlier == exact.earlier
        assert carried.muted_until == exact.muted_until == 7
        assert carried.recent >= exact.recent
        if ts - FLOOD_MS >= kept.read_at or kept.uncounted == 0:
            assert carried.recent == exact.recent
        kept = kept.with_message((ts, seq, shown_body({"body": body} if body else {})))
        n += 1


async def test_a_message_sent_before_the_latest_kept_is_not_judged_from_it() -> None:
    kept = KeptHistory.read(History(1, None, []), (5_000, 1, "hi"), FLOOD_MS)
    assert kept.of(4_999) is None
    assert kept.of(5_000) == History(2, None, ["hi"])
