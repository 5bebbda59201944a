"""What the reconcile needs to compare only what changed: its runs (leased, with the start of
the last completed one), the rooms whose comparison failed, and what changed since a time."""

from __future__ import annotations

from dataclasses import dataclass

from mautrix.util.async_db import Database, Scheme

from bridge.storage.database import rows_affected
from bridge.storage.upgrades import PLAN_EVENT_TYPES
from policy.ids import DisputeId, TransactionId

# What a room belongs to, as the reconcile names it: ('transaction', id), ('dispute', id),
# or ('management', '').
Owner = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Run:
    started_at: int  # the start of the last completed run (0: none yet)
    completed_at: int
    fingerprint: str  # the plans it compared against
    holder: str  # the process that holds (or last held) the lease


def _owned(table: str, key: str, rooms: str) -> str:
    """The (id, at) of ``table``'s objects whose rooms are among ``rooms``' (room_id, at),
    each room looked up by its unique room_id. Not a join: the room sources are small tables
    that may never have been analyzed, and PostgreSQL's guess for such a table (hundreds of
    rows) had it hash the whole of ``table`` every few seconds (tests/db/test_plans.py)."""
    return (
        f"SELECT id, at FROM (SELECT (SELECT o.{key} FROM {table} o"  # noqa: S608 (our names)
        f" WHERE o.room_id = r.room_id) AS id, r.at FROM ({rooms}) r) owned WHERE id IS NOT NULL"
    )


class ReconcileRuns:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def last(self, kind: str) -> Run:
        row = await self._db.fetchrow(
            "SELECT started_at, completed_at, fingerprint, holder FROM reconcile_runs"
            " WHERE kind = $1",
            kind,
        )
        return Run(row["started_at"], row["completed_at"], row["fingerprint"], row["holder"])

    async def lease(self, kind: str, holder: str, now: int, until: int) -> bool:
        """Take (or extend) the lease of a kind of run; False while another process holds it."""
        status = await self._db.execute(
            "UPDATE reconcile_runs SET holder = $2, lease_until = $4"
            " WHERE kind = $1 AND (holder = $2 OR lease_until <= $3)",
            kind,
            holder,
            now,
            until,
        )
        return rows_affected(status) == 1

    async def complete(
        self, kinds: tuple[str, ...], started_at: int, now: int, fingerprint: str
    ) -> None:
        """Record a completed run (a full run completes a 'changed' one too), never moving
        the mark back (another process may have completed a later run meanwhile). The lease
        stays with its holder, which runs the next one too, until it expires or is released."""
        async with self._db.acquire() as conn, conn.transaction():
            for kind in kinds:
                await conn.execute(
                    "UPDATE reconcile_runs SET started_at = $2, completed_at = $3,"
                    " fingerprint = $4 WHERE kind = $1 AND started_at <= $2",
                    kind,
                    started_at,
                    now,
                    fingerprint,
                )

    async def release(self, holder: str) -> None:
        """Leave the leases to other processes (on a clean stop)."""
        await self._db.execute(
            "UPDATE reconcile_runs SET lease_until = 0 WHERE holder = $1", holder
        )

    async def failed(self, owner: Owner, now: int, error: str) -> None:
        await self._db.execute(
            "INSERT INTO reconcile_failures (kind, object_id, failed_at, error)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (kind, object_id)"
            " DO UPDATE SET failed_at = excluded.failed_at, error = excluded.error",
            *owner,
            now,
            error[:1000],
        )

    async def succeeded(self, owner: Owner) -> None:
        await self._db.execute(
            "DELETE FROM reconcile_failures WHERE kind = $1 AND object_id = $2", *owner
        )

    async def failures(self) -> set[Owner]:
        rows = await self._db.fetch("SELECT kind, object_id FROM reconcile_failures")
        return {(row["kind"], row["object_id"]) for row in rows}

    async def changed_since(self, since: int, management: str | None) -> dict[Owner, int]:
        """Objects whose rooms may have left their plans since ``since`` (ms), each with the
        time of its latest such change: the object changed (a transition, an override, a room
        made), a party was suspended or erased, a mute started or ended, a membership or
        planned state event arrived in its room, or an invitation its invitee blocked waits to
        be tried again."""
        pick = " INDEXED BY inbox_events_plan_changes" if self._db.scheme == Scheme.SQLITE else ""
        rooms = (  # (room_id, at)
            f"SELECT room_id, MAX(received_at) AS at FROM inbox_events{pick}"  # noqa: S608
            f" WHERE received_at >= $1 AND event_type IN ({PLAN_EVENT_TYPES}) GROUP BY room_id"
            " UNION ALL SELECT room_id, until FROM mutes WHERE until >= $1"
            " UNION ALL SELECT room_id, blocked_at FROM blocked_invites"
        )
        # Parties suspended or erased since (unsuspending is redone by the marketplace's retry).
        users = (
            "SELECT user_id, COALESCE(erased_at, suspended_at) AS at FROM marketplace_users"
            " WHERE suspended_at >= $1 OR erased_at >= $1"
        )
        queries = {
            "transaction": "SELECT transaction_id AS id, changed_at AS at"  # noqa: S608
            " FROM transactions"
            " WHERE changed_at >= $1"
            f" UNION ALL SELECT t.transaction_id, u.at FROM ({users}) u"
            " JOIN transactions t ON t.buyer_id = u.user_id"
            f" UNION ALL SELECT t.transaction_id, u.at FROM ({users}) u"
            " JOIN transactions t ON t.seller_id = u.user_id"
            f" UNION ALL {_owned('transactions', 'transaction_id', rooms)}",
            "dispute": "SELECT dispute_id AS id, changed_at AS at FROM disputes"  # noqa: S608
            " WHERE changed_at >= $1"
            f" UNION ALL SELECT d.dispute_id, u.at FROM ({users}) u"
            " JOIN transactions t ON u.user_id IN (t.buyer_id, t.seller_id)"
            " JOIN disputes d ON d.transaction_id = t.transaction_id"
            f" UNION ALL {_owned('disputes', 'dispute_id', rooms)}",
        }
        changed: dict[Owner, int] = {}
        async with self._db.acquire() as conn:
            for kind, query in queries.items():
                for row in await conn.fetch(query, since):
                    owner = (kind, row["id"])
                    changed[owner] = max(changed.get(owner, 0), row["at"])
            if management is not None:
                at = await conn.fetchval(
                    f"SELECT MAX(at) FROM ({rooms}) r WHERE room_id = $2",  # noqa: S608
                    since,
                    management,
                )
                if at is not None:
                    changed[("management", "")] = at
        return changed

    async def active_objects(self) -> set[Owner]:
        """Transactions not closed and open disputes: the scheduled run's."""
        rows = await self._db.fetch(
            "SELECT 'transaction' AS kind, transaction_id AS id FROM transactions"
            " WHERE state <> 'closed'"
            " UNION ALL SELECT 'dispute', dispute_id FROM disputes WHERE state = 'open'"
        )
        return {(row["kind"], row["id"]) for row in rows}

    async def all_objects(self) -> list[Owner]:
        """Every transaction and dispute, oldest first (the full comparison)."""
        transactions = await self._db.fetch(
            "SELECT transaction_id FROM transactions ORDER BY created_at"
        )
        disputes = await self._db.fetch("SELECT dispute_id FROM disputes ORDER BY created_at")
        return [("transaction", TransactionId(row["transaction_id"])) for row in transactions] + [
            ("dispute", DisputeId(row["dispute_id"])) for row in disputes
        ]
