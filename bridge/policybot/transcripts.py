"""Transcript export: a transaction's or dispute's room, from our own records, as evidence.

id -> the room -> its stored events in arrival order (the inbox keeps them, redacted
originals included) -> policy.transcript builds the hash-chained document
   -> the final hash goes into the audit trail, so a wholly recomputed chain shows too
"""

from __future__ import annotations

import json
import time
from typing import Any

from mautrix.util.async_db import Database

from bridge.homeserver.inbox import RECEIPT_EVENT_TYPE
from bridge.market.audit import AuditEntry, write_audit
from bridge.market.errors import MarketError
from bridge.market.records.transactions import Records
from policy.transcript import build_transcript


class Transcripts:
    def __init__(self, db: Database, records: Records) -> None:
        self._db = db
        self._records = records

    async def of(self, object_id: str, actor: str) -> dict[str, Any]:
        """The transcript of a transaction's room, or else of a dispute's room."""
        if await self._records.get_transaction(object_id) is not None:
            return await self.of_transaction(object_id, actor)
        if await self._records.get_dispute(object_id) is not None:
            return await self.of_dispute(object_id, actor)
        raise MarketError.not_found(f"no transaction or dispute {object_id}")

    async def of_transaction(self, transaction_id: str, actor: str) -> dict[str, Any]:
        record = await self._records.get_transaction(transaction_id)
        if record is None:
            raise MarketError.not_found(f"no transaction {transaction_id}")
        header = {
            "room_id": record.room_id or "",
            "room_kind": "transaction",
            "transaction_id": transaction_id,
            "dispute_id": None,
        }
        return await self._export(header, actor)

    async def of_dispute(self, dispute_id: str, actor: str) -> dict[str, Any]:
        dispute = await self._records.get_dispute(dispute_id)
        if dispute is None:
            raise MarketError.not_found(f"no dispute {dispute_id}")
        header = {
            "room_id": dispute.room_id or "",
            "room_kind": "dispute",
            "transaction_id": dispute.transaction_id,
            "dispute_id": dispute_id,
        }
        return await self._export(header, actor)

    async def _export(self, header: dict[str, Any], actor: str) -> dict[str, Any]:
        async with self._db.acquire() as conn:
            rows = []
            if header["room_id"]:  # no room yet: nothing happened
                rows = await conn.fetch(
                    "SELECT event_json FROM inbox_events"
                    " WHERE room_id = $1 AND event_type <> $2 ORDER BY seq",
                    header["room_id"],
                    RECEIPT_EVENT_TYPE,
                )
            now = int(time.time() * 1000)
            document = build_transcript(header, (json.loads(r["event_json"]) for r in rows), now)
            await write_audit(
                conn,
                AuditEntry(
                    actor=actor,
                    action="transcript.exported",
                    room_id=header["room_id"],
                    detail=f"{document['entry_count']} entries, final hash "
                    f"{document['final_hash']}",
                    transaction_id=header["transaction_id"],
                    dispute_id=header["dispute_id"],
                ),
                now,
            )
        return document
