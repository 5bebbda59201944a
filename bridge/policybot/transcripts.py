"""Transcript export: a transaction's or dispute's room, from our own records, as evidence.

id -> the room -> its stored events in arrival order (the inbox keeps them, redacted originals
included) -> policy.transcript builds the hash-chained document
   -> the final hash goes into the audit trail, so a wholly recomputed chain shows too
A room removed for retention (bridge.retention) has no events left: its final transcript,
stored before the removal, is what is exported.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from bridge.market.errors import InvalidState, NotFound
from bridge.market.records.audit import AuditEntry, AuditLog
from bridge.market.records.disputes import DisputeRecords
from bridge.market.records.transactions import TransactionRecords
from bridge.runtime.clock import Clock
from policy.ids import DisputeId, RoomId, TransactionId
from policy.rooms import RoomKind
from policy.transcript import build_transcript


class RoomHistory(Protocol):
    async def room_events(self, room_id: RoomId) -> list[dict[str, Any]]:
        """The room's events as received, in arrival order (read positions left out)."""
        ...


class Originals(Protocol):
    async def of_room(self, room_id: RoomId) -> dict[Any, Any]:
        """The originals of the room's masked messages, by event id."""
        ...


class Transcripts:
    def __init__(
        self,
        transactions: TransactionRecords,
        disputes: DisputeRecords,
        history: RoomHistory,
        originals: Originals,
        audit: AuditLog,
        clock: Clock,
        final: Callable[[RoomId], Awaitable[dict[str, Any] | None]],
    ) -> None:
        self._final = final
        self._transactions = transactions
        self._disputes = disputes
        self._history = history
        self._originals = originals
        self._audit = audit
        self._clock = clock

    async def of(self, object_id: str, actor: str) -> dict[str, Any]:
        """The transcript of a transaction's room, or else of a dispute's room."""
        if await self._transactions.get(TransactionId(object_id)) is not None:
            return await self.of_transaction(TransactionId(object_id), actor)
        if await self._disputes.get(DisputeId(object_id)) is not None:
            return await self.of_dispute(DisputeId(object_id), actor)
        raise NotFound(f"no transaction or dispute {object_id}")

    async def of_transaction(self, transaction_id: TransactionId, actor: str) -> dict[str, Any]:
        record = await self._transactions.get(transaction_id)
        if record is None:
            raise NotFound(f"no transaction {transaction_id}")
        header = {
            "room_id": record.room_id or "",
            "room_kind": RoomKind.TRANSACTION.value,
            "transaction_id": transaction_id,
            "dispute_id": None,
        }
        return await self._export(header, actor, purged=record.purged_at is not None)

    async def of_dispute(self, dispute_id: DisputeId, actor: str) -> dict[str, Any]:
        dispute = await self._disputes.get(dispute_id)
        if dispute is None:
            raise NotFound(f"no dispute {dispute_id}")
        header = {
            "room_id": dispute.room_id or "",
            "room_kind": RoomKind.DISPUTE.value,
            "transaction_id": dispute.transaction_id,
            "dispute_id": dispute_id,
        }
        return await self._export(header, actor, purged=dispute.purged_at is not None)

    async def _export(self, header: dict[str, Any], actor: str, purged: bool) -> dict[str, Any]:
        room_id = header["room_id"]
        if purged:  # its export was audited when it was stored
            if (document := await self._final(room_id)) is None:
                raise InvalidState(f"room {room_id} was removed; its stored transcript is gone")
            return document
        events, originals = [], {}
        if room_id:  # no room yet: nothing happened
            events = await self._history.room_events(room_id)
            originals = await self._originals.of_room(room_id)
        document = build_transcript(header, events, self._clock.now_ms(), originals)
        await self._audit.write(
            AuditEntry(
                actor=actor,
                action="transcript.exported",
                room_id=header["room_id"],
                detail=f"{document['entry_count']} entries, final hash {document['final_hash']}",
                transaction_id=header["transaction_id"],
                dispute_id=header["dispute_id"],
            )
        )
        return document
