"""Legal holds: the manual one on a transaction's row, and those its disputes put on it.

A manual hold lives on the transaction's row (held_at, held_by, hold_reason), so placing one
and announcing a purge (bridge.retention) serialise on that row's lock: a hold placed first
stops the purge; one placed after finds the room already going (its ``purged_at``).
"""

from __future__ import annotations

from mautrix.util.async_db import Connection, Database

from bridge.storage.database import rows_affected
from policy.ids import DisputeId, TransactionId
from policy.retention import DisputeTimes, Hold, dispute_hold


def _manual(row) -> Hold:
    return Hold(
        row["transaction_id"],
        "manual",
        row["held_at"],
        None,
        row["hold_reason"],
        placed_by=row["held_by"],
    )


# Which transactions: {which} is a condition on ``t`` with the placeholders from $2 on.
_MANUAL = """
    SELECT t.transaction_id, t.held_at, t.held_by, t.hold_reason FROM transactions t
    WHERE t.held_at IS NOT NULL AND {which} ORDER BY t.held_at, t.transaction_id
"""
_BY_DISPUTES = """
    SELECT d.dispute_id, d.transaction_id, d.created_at, d.resolved_at
    FROM disputes d JOIN transactions t ON t.transaction_id = d.transaction_id
    WHERE (d.resolved_at IS NULL OR d.resolved_at > $1) AND {which}
    ORDER BY d.created_at, d.dispute_id
"""
ALL, ONE, OF_USER = "1 = 1", "t.transaction_id = $2", "(t.buyer_id = $2 OR t.seller_id = $2)"


async def holds_where(
    conn: Connection | Database, which: str, hold_after_ms: int, now: int, *args: object
) -> list[Hold]:
    """The holds in force on the transactions ``which`` picks: manual ones, then those of
    their disputes (open, or resolved less than ``hold_after_ms`` ago)."""
    manual = _MANUAL.format(which=which.replace("$2", "$1"))
    holds = [_manual(row) for row in await conn.fetch(manual, *args)]
    rows = await conn.fetch(_BY_DISPUTES.format(which=which), now - hold_after_ms, *args)
    for row in rows:
        times = DisputeTimes(DisputeId(row["dispute_id"]), row["created_at"], row["resolved_at"])
        if (hold := dispute_hold(row["transaction_id"], times, hold_after_ms, now)) is not None:
            holds.append(hold)
    return holds


async def place_hold(
    conn: Connection, transaction_id: TransactionId, reason: str, by: str, now: int
) -> bool:
    """Whether a new manual hold was placed (False: one was already there)."""
    status = await conn.execute(
        "UPDATE transactions SET held_at = $2, held_by = $3, hold_reason = $4"
        " WHERE transaction_id = $1 AND held_at IS NULL",
        transaction_id,
        now,
        by,
        reason,
    )
    return rows_affected(status) == 1


async def release_hold(conn: Connection, transaction_id: TransactionId) -> bool:
    """Whether a manual hold was there to release."""
    status = await conn.execute(
        "UPDATE transactions SET held_at = NULL, held_by = NULL, hold_reason = NULL"
        " WHERE transaction_id = $1 AND held_at IS NOT NULL",
        transaction_id,
    )
    return rows_affected(status) == 1
