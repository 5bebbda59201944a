"""The exchanges and follow_ups tables (the SQL of deals/ lives here)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from mautrix.util.async_db import Connection, Database, Scheme

from bridge.storage.database import rows_affected
from bridge.storage.writes import Rows, Writes
from policy.follow_ups import FollowUpKind, Schedule, Waiting
from policy.ids import EventId, RoomId, TransactionId, UserId
from policy.responsiveness import Exchange

# Exchanges


def answer_exchanges(
    writes: Writes, room_id: RoomId, responder: UserId, ts: int, then: Callable[[Rows], None]
) -> None:
    """The responder's first reply ends what waited for them; ``then`` is given the start
    time (``started_at``) of each exchange it ends."""
    writes.add(
        "UPDATE exchanges SET answered_at = $3"
        " WHERE room_id = $1 AND responder = $2 AND answered_at IS NULL RETURNING started_at",
        room_id,
        responder,
        ts,
        then=then,
    )


async def start_exchange(
    conn: Connection | Writes,
    room_id: RoomId,
    transaction_id: TransactionId,
    responder: UserId,
    role: str,
    event_id: EventId,
    ts: int,
) -> None:
    """A message starts an exchange unless one already waits for the same responder."""
    await conn.execute(
        "INSERT INTO exchanges (room_id, transaction_id, responder, role, event_id, started_at)"
        " SELECT $1, $2, $3, $4, $5, $6 WHERE NOT EXISTS (SELECT 1 FROM exchanges"
        " WHERE room_id = $1 AND responder = $3 AND answered_at IS NULL)"
        " ON CONFLICT DO NOTHING",
        room_id,
        transaction_id,
        responder,
        role,
        event_id,
        ts,
    )


async def is_answered(conn: Connection, room_id: RoomId, event_id: EventId) -> bool:
    answered = await conn.fetchval(
        "SELECT answered_at FROM exchanges WHERE room_id = $1 AND event_id = $2",
        room_id,
        event_id,
    )
    return answered is not None


class Exchanges:
    """What responsiveness reads."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def of(self, responder: UserId, role: str, since: int) -> list[Exchange]:
        rows = await self._db.fetch(
            "SELECT started_at, answered_at FROM exchanges"
            " WHERE responder = $1 AND role = $2 AND started_at >= $3",
            responder,
            role,
            since,
        )
        return [Exchange(row["started_at"], row["answered_at"]) for row in rows]

    async def sellers(self, after: str, limit: int) -> list[tuple[str, UserId]]:
        """Marketplace users who sell in at least one transaction, by user id, after ``after``."""
        rows = await self._db.fetch(
            "SELECT u.user_id, u.matrix_id FROM marketplace_users u"
            " WHERE u.user_id > $1"
            " AND EXISTS (SELECT 1 FROM transactions t WHERE t.seller_id = u.user_id)"
            " ORDER BY u.user_id LIMIT $2",
            after,
            limit,
        )
        return [(row["user_id"], row["matrix_id"]) for row in rows]


# Follow-ups


@dataclass(frozen=True, slots=True)
class FollowUp:
    seq: int
    kind: FollowUpKind
    room_id: RoomId
    user_id: UserId
    event_id: EventId  # the message it is about (a reminder: the first of the burst)
    started_at: int
    due_at: int
    fired: int  # how many times it has fired (reminders repeat; an escalation fires first)
    attempts: int


_FOLLOW_UP = "seq, kind, room_id, user_id, event_id, started_at, due_at, fired, attempts"


def _follow_up(row) -> FollowUp:
    return FollowUp(**{**dict(row), "kind": FollowUpKind(row["kind"])})


async def schedule(
    conn: Connection | Writes,
    room_id: RoomId,
    event_id: EventId,
    ts: int,
    plans: Iterable[Schedule],
    now: int,
    new_exchange: bool = False,
) -> None:
    """Each plan, unless one of its kind is already open for the person in the room: one
    statement however many plans. ``new_exchange``: only for a person no exchange of the room
    waits for yet (the plans of the exchange this message starts: added before
    `start_exchange` among other writes)."""
    plans = list(plans)
    if not plans:
        return
    values = ", ".join(
        f"(${5 + 3 * n}, ${6 + 3 * n}, CAST(${7 + 3 * n} AS BIGINT))" for n in range(len(plans))
    )
    unanswered = (
        " AND NOT EXISTS (SELECT 1 FROM exchanges x WHERE x.room_id = $1"
        " AND x.responder = v.column2 AND x.answered_at IS NULL)"
        if new_exchange
        else ""
    )
    await conn.execute(
        "INSERT INTO follow_ups (kind, room_id, user_id, event_id, started_at, due_at,"  # noqa: S608
        " created_at) SELECT v.column1, $1, v.column2, $2, CAST($3 AS BIGINT), v.column3,"
        f" CAST($4 AS BIGINT) FROM (VALUES {values}) AS v WHERE NOT EXISTS"
        " (SELECT 1 FROM follow_ups f WHERE f.room_id = $1 AND f.user_id = v.column2"
        f" AND f.kind = v.column1 AND f.status IN ('pending', 'waiting')){unanswered}"
        " ON CONFLICT DO NOTHING",
        room_id,
        event_id,
        ts,
        now,
        *(value for plan in plans for value in (plan.kind.value, plan.user_id, plan.due_at)),
    )


async def cancel(
    conn: Connection | Writes,
    room_id: RoomId,
    user_id: UserId,
    kinds: Iterable[FollowUpKind],
    now: int,
) -> None:
    """End what is open: before it fired, cancelled; a reminder that fired, done."""
    kinds = [kind.value for kind in kinds]
    listed = ", ".join(f"${n}" for n in range(4, 4 + len(kinds)))
    await conn.execute(
        "UPDATE follow_ups SET done_at = $3,"  # noqa: S608 (placeholders only)
        " status = CASE WHEN fired = 0 THEN 'cancelled' ELSE 'done' END"
        f" WHERE room_id = $1 AND user_id = $2 AND kind IN ({listed})"
        " AND status IN ('pending', 'waiting')",
        room_id,
        user_id,
        now,
        *kinds,
    )


async def waiting(conn: Connection, room_id: RoomId, reader: UserId) -> Waiting | None:
    """Others' messages after the reader's read position and after their own last message
    (a reply reads what came before it); None when nothing waits."""
    rows = await conn.fetch(
        "SELECT event_id, sender, ts, preview FROM messages"
        " WHERE room_id = $1 AND sender <> $2 AND NOT deleted"
        " AND ts > COALESCE((SELECT ts FROM read_positions WHERE room_id = $1 AND user_id = $2),"
        " 0)"
        " AND ts > COALESCE((SELECT MAX(ts) FROM messages WHERE room_id = $1 AND sender = $2),"
        " 0)"
        " ORDER BY ts",
        room_id,
        reader,
    )
    if not rows:
        return None
    latest = rows[-1]
    return Waiting(
        len(rows),
        rows[0]["ts"],
        latest["event_id"],
        latest["sender"],
        latest["preview"],
        latest["ts"],
    )


class FollowUps:
    """The follow-up worker's queries: due rows under a lease, then one ending."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @property
    def _due_where(self) -> str:
        """Pending follow-ups whose time ($1) has come, that nobody holds, in rooms whose
        stored events are all processed (a read or a reply may be among them)."""
        # SQLite, without statistics (the bridge never ANALYZEs), would read every event of
        # each candidate room by room order; the partial index reads only the pending ones
        # (bench/follow_ups.py: 3.8 ms against 0.8 ms at 100,000 rooms).
        pending = " INDEXED BY inbox_events_pending" if self._db.scheme == Scheme.SQLITE else ""
        return (
            "status = 'pending' AND due_at <= $1 AND lease_until < $1"  # noqa: S608
            f" AND NOT EXISTS (SELECT 1 FROM inbox_events i{pending}"
            " WHERE i.room_id = f.room_id AND i.status = 'pending')"
        )

    @property
    def any_due(self) -> str:
        """Whether any follow-up is due at $1 (`DueWatch`)."""
        return f"SELECT EXISTS (SELECT 1 FROM follow_ups f WHERE {self._due_where})"  # noqa: S608

    async def due(self, now: int, limit: int) -> list[FollowUp]:
        """The follow-ups due at ``now`` (`_due_where`), oldest first."""
        rows = await self._db.fetch(
            f"SELECT {_FOLLOW_UP} FROM follow_ups f WHERE {self._due_where}"  # noqa: S608
            " ORDER BY due_at, seq LIMIT $2",
            now,
            limit,
        )
        return [_follow_up(row) for row in rows]

    async def claim(self, seq: int, now: int, until: int) -> bool:
        """Take the follow-up until ``until``, unless another process has it."""
        status = await self._db.execute(
            "UPDATE follow_ups SET lease_until = $2, attempts = attempts + 1"
            " WHERE seq = $1 AND status = 'pending' AND lease_until < $3",
            seq,
            until,
            now,
        )
        return rows_affected(status) > 0

    async def retry_at(self, seq: int, due_at: int, error: str) -> None:
        await self._db.execute(
            "UPDATE follow_ups SET due_at = $2, lease_until = 0, last_error = $3 WHERE seq = $1",
            seq,
            due_at,
            error[:500],
        )


async def finish(
    conn: Connection,
    item: FollowUp,
    lease: int,
    status: str,
    now: int,
    *,
    fired: bool = False,
    error: str | None = None,
) -> bool:
    """End the follow-up (``fired``: by firing) in the caller's transaction, if this process
    still holds it."""
    result = await conn.execute(
        "UPDATE follow_ups SET status = $3, done_at = $4, last_error = $5, fired = fired + $6"
        " WHERE seq = $1 AND status = 'pending' AND lease_until = $2",
        item.seq,
        lease,
        status,
        now,
        error[:500] if error else None,
        int(fired),
    )
    return rows_affected(result) > 0


async def reschedule(
    conn: Connection,
    item: FollowUp,
    lease: int,
    due_at: int,
    *,
    fired: bool,
    held_until: int = 0,
) -> bool:
    """Keep the follow-up pending until ``due_at`` (``fired``: counting a firing), released,
    or still held until ``held_until`` (an escalation whose dispute this process opens next);
    if this process still holds it."""
    result = await conn.execute(
        "UPDATE follow_ups SET fired = fired + $5, due_at = $3, lease_until = $4"
        " WHERE seq = $1 AND status = 'pending' AND lease_until = $2",
        item.seq,
        lease,
        due_at,
        held_until,
        int(fired),
    )
    return rows_affected(result) > 0
