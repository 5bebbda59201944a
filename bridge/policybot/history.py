"""What a party said before the event the policy bot judges, in one query.

    their messages in the flood window ending at the event (it included), the end of their
    mute in this room if any, and the bodies of their messages just before it, oldest first
    (a number split across messages is judged whole; for a message only)

It reads the homeserver's inbox table and the mutes for every party's message. Run alone
(`read_history`), or, on PostgreSQL, for the room's first pending event within the inbox's
query that reads the room's events (`first_pending_sql`, the ``first`` of `read_pending`):
the read the judgement of most messages waits for then costs no round trip of its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mautrix.util.async_db import Connection

from policy.messages import shown_body
from policy.rules import ACROSS_MESSAGES, ACROSS_WINDOW_MS

# One of a sender's messages as `KeptHistory` keeps it: (origin_server_ts, seq, shown body).
Message = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class History:
    recent: int  # their messages in the flood window, the judged one included
    muted_until: int | None
    earlier: list[str]  # the bodies of their messages just before, oldest first
    # The messages `earlier` was taken from, oldest first (empty bodies too), for
    # `KeptHistory`; a by-product of the read, not compared.
    before: tuple[Message, ...] = field(default=(), compare=False)


def _sql(
    room: str,
    sender: str,
    ts: str,
    event_id: str,
    limit: str,
    flood_ms: int,
    content: str,
    unseen: str = "0",
) -> str:
    """The query, given SQL for the event's fields: one row of counts (part 0), then the
    earlier messages (part 1), each message's ``content`` given by the SQL ``content``;
    ``unseen``: what to add to the count for the event itself, when it is not yet visible."""
    messages = (
        f"FROM inbox_events WHERE room_id = {room} AND sender = {sender}"
        f" AND event_type = 'm.room.message' AND origin_server_ts <= {ts}"
    )
    return (
        f"SELECT 0 AS part, (SELECT COUNT(*) {messages}"  # noqa: S608 (our SQL and ints)
        f"  AND origin_server_ts > {ts} - {int(flood_ms)}) + {unseen} AS recent,"
        f" (SELECT until FROM mutes WHERE room_id = {room} AND user_id = {sender})"
        "  AS muted_until, NULL AS content, 0 AS ts, 0 AS seq"
        " UNION ALL SELECT 1, 0, NULL, content, origin_server_ts, seq FROM"
        f" (SELECT {content} AS content, origin_server_ts, seq {messages}"
        f"  AND origin_server_ts > {ts} - {ACROSS_WINDOW_MS} AND event_id <> {event_id}"
        f"  ORDER BY origin_server_ts DESC, seq DESC LIMIT {limit}) AS earlier"
    )


async def read_history(conn: Connection, event: dict[str, Any], flood_ms: int) -> History:
    """The event's history, read alone."""
    rows = await conn.fetch(
        _sql("$1", "$2", "CAST($3 AS BIGINT)", "$4", "$5", flood_ms, "event_json"),
        event["room_id"],
        event["sender"],
        event.get("origin_server_ts", 0),
        event["event_id"],
        ACROSS_MESSAGES if event.get("type") == "m.room.message" else 0,
    )
    return _history(
        [dict(row) for row in rows], lambda event_json: json.loads(event_json).get("content")
    )


def first_pending_sql(flood_ms: int) -> str:
    """PostgreSQL: the history of the room ($1)'s first pending event, as one row: the
    event's id (``history_of``) and the query's rows as JSON (``history``)."""
    return (
        "SELECT h.* FROM (SELECT room_id, sender, origin_server_ts, event_id, event_type"  # noqa: S608 (ours)
        " FROM inbox_events WHERE room_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1) f"
        f" CROSS JOIN LATERAL ({_history_of_f(flood_ms, '0')}) h"
    )


def stored_event_sql(flood_ms: int) -> str:
    """PostgreSQL: `first_pending_sql`'s row for an event being stored by the statement
    that reads it (``f``: its row, as the INSERT returns it, not yet visible in the table:
    it is counted on its own)."""
    return _history_of_f(flood_ms, "CASE WHEN f.event_type = 'm.room.message' THEN 1 ELSE 0 END")


def _history_of_f(flood_ms: int, unseen: str) -> str:
    """The history of the event ``f`` (a row of the outer query: room_id, sender,
    origin_server_ts, event_id, event_type) as one row of JSON."""
    rows = _sql(
        "f.room_id",
        "f.sender",
        "f.origin_server_ts",
        "f.event_id",
        f"CASE WHEN f.event_type = 'm.room.message' THEN {ACROSS_MESSAGES} ELSE 0 END",
        flood_ms,
        # The contents taken out by the server, within the answer's one JSON document: the
        # bridge parses that once, not each message's whole event again.
        "event_json::json -> 'content'",
        unseen,
    )
    return f"SELECT f.event_id AS history_of, json_agg(r) AS history FROM ({rows}) r"  # noqa: S608 (ours)


def prefetched(first: Any, event_id: str) -> History | None:
    """The history `first_pending_sql` (or `stored_event_sql`) read with the room's events
    (``first``: its row in `read_pending`'s answer), if it is this event's."""
    if first is None or first["history_of"] != event_id:
        return None
    return _history(json.loads(first["history"]), lambda content: content)


def _history(rows: list[dict[str, Any]], content_of: Callable[[Any], Any]) -> History:
    """The history from the query's rows; ``content_of``: a message's content from its
    ``content`` column."""
    (counts,) = (row for row in rows if row["part"] == 0)
    earlier = sorted((r for r in rows if r["part"] == 1), key=lambda r: (r["ts"], r["seq"]))
    before = tuple((r["ts"], r["seq"], shown_body(content_of(r["content"]))) for r in earlier)
    return History(counts["recent"], counts["muted_until"], _bodies(before), before)


def _bodies(messages: tuple[Message, ...]) -> list[str]:
    return [body for _, _, body in messages if body]


@dataclass(frozen=True, slots=True)
class KeptHistory:
    """A sender's history read with one of their messages, carried forward by their later
    messages: for a later message, what the query would read, as long as no other message
    of theirs was stored (nor one sent later than the last kept) and their mute did not
    change, which the caller must make sure of (`bridge.homeserver.arrivals` checks it in
    the statement that stores the later message).

    The read counts the flood window's messages without saying when each was sent: those
    not among the kept messages are counted as in the window until the window has moved
    past the read, so `recent` may be more than the query's count, never less."""

    read_at: int  # when the message read with was sent
    uncounted: int  # the read's flood-window messages not kept: sent in the window at read_at
    messages: tuple[Message, ...]  # oldest first; the last one the sender's latest
    muted_until: int | None
    flood_ms: int

    @classmethod
    def read(cls, history: History, message: Message, flood_ms: int) -> KeptHistory:
        """Kept from ``history``, the history read with ``message``."""
        ts = message[0]
        known = (*history.before, message)
        in_window = sum(1 for sent, _, _ in known if sent > ts - flood_ms)
        return cls(ts, max(0, history.recent - in_window), known, history.muted_until, flood_ms)

    @property
    def latest(self) -> Message:
        return self.messages[-1]

    def of(self, ts: int) -> History | None:
        """The history of the sender's next message, sent at ``ts`` (None: sent before
        their latest, which the read would not have counted)."""
        if ts < self.latest[0]:
            return None
        flood_start = ts - self.flood_ms
        recent = 1 + sum(1 for sent, _, _ in self.messages if sent > flood_start)
        if flood_start < self.read_at:
            recent += self.uncounted
        before = tuple(m for m in self.messages if m[0] > ts - ACROSS_WINDOW_MS)
        before = before[-ACROSS_MESSAGES:]
        return History(recent, self.muted_until, _bodies(before), before)

    def with_message(self, message: Message) -> KeptHistory:
        """Carried forward by the sender's next message (sent at or after their latest);
        what no later message's windows can reach is let go."""
        reach = message[0] - max(self.flood_ms, ACROSS_WINDOW_MS)
        kept = tuple(m for m in self.messages if m[0] > reach)
        return KeptHistory(
            self.read_at, self.uncounted, (*kept, message), self.muted_until, self.flood_ms
        )
