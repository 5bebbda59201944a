"""Admin commands from Matrix: parsed and authorised in `policy.commands`, carried out here.

    inbox worker (a party's or admin's message, after it is stored as done)
      -> parse (not addressed to the bot: nothing) -> may this sender command in this room?
      -> run through the market's use cases, as the API would -> reply in the room -> audit

Refusals change nothing but the audit trail and a short reply. A command runs at most once:
a crash between storing the event and running it loses the command (the admin sees no reply).
Evidence (transcripts, the list of disputes) is only ever posted in the moderation room, which
parties never join: asked for in a dispute room, it goes there and the reply says so.
"""

from __future__ import annotations

import json
import logging
from typing import Any, assert_never

from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError, txn_id
from bridge.market.disputes import Disputes
from bridge.market.errors import InvalidState, MarketError, NotFound
from bridge.market.management import ManagementRoom
from bridge.market.models import Resolution
from bridge.market.moderation import Moderation
from bridge.market.records.audit import AuditEntry, AuditLog
from bridge.market.records.disputes import DisputeRecords
from bridge.market.records.transactions import TransactionRecords
from bridge.market.transactions import Transactions
from policy.commands import Command, CommandName, Refusal, help_text, may_command, parse_command
from policy.ids import DisputeId, RoomId, TransactionId, UserId
from policy.rooms import RoomKind
from policy.states import Access

from .transcripts import Transcripts

NOT_ALLOWED = (
    "Only the marketplace's admins can give commands, in the moderation room or a dispute room."
)
POSTED_ELSEWHERE = "{what} is in the moderation room: evidence is never posted where parties read."


class CommandRunner:
    def __init__(
        self,
        prefix: str,
        admins: tuple[UserId, ...],
        transactions: Transactions,
        transaction_records: TransactionRecords,
        disputes: Disputes,
        dispute_records: DisputeRecords,
        moderation: Moderation,
        management: ManagementRoom,
        transcripts: Transcripts,
        audit: AuditLog,
        bot: MatrixBot,
    ) -> None:
        self._prefix = prefix
        self._admins = admins
        self._transactions = transactions
        self._transaction_records = transaction_records
        self._disputes = disputes
        self._dispute_records = dispute_records
        self._moderation = moderation
        self._management = management
        self._transcripts = transcripts
        self._audit = audit
        self._bot = bot
        self._log = logging.getLogger("bridge.policybot.commands")

    def is_command(self, event: dict[str, Any]) -> bool:
        """Whether a message is addressed to the bot (``handle`` will answer it)."""
        content = event.get("content")
        body = content.get("body") if isinstance(content, dict) else None
        return (
            event.get("type") == "m.room.message" and parse_command(body, self._prefix) is not None
        )

    async def handle(self, room_id: RoomId, kind: RoomKind | None, event: dict[str, Any]) -> None:
        """Carry out the command a message holds, if it holds one; reply and audit."""
        parsed = parse_command((event.get("content") or {}).get("body"), self._prefix)
        if parsed is None:
            return
        sender = event.get("sender", "")
        if kind is None and room_id == self._management.room_id:
            kind = RoomKind.MANAGEMENT
        if not may_command(sender, self._admins, kind):
            outcome, reply = "refused", NOT_ALLOWED
        elif isinstance(parsed, Refusal):
            outcome, reply = "refused", parsed.reason
        else:
            try:
                outcome, reply = "done", await self._run(parsed, sender, room_id, event)
            except MarketError as e:
                outcome, reply = "failed", e.message
            except (HomeserverUnavailable, MatrixError) as e:
                outcome, reply = "failed", f"The homeserver did not answer ({e}); try again."
        await self._audit.write(
            AuditEntry(
                actor=sender,
                action="command",
                room_id=room_id,
                outcome=outcome,
                reason=reply[:200] if outcome != "done" else None,
                detail=event["content"]["body"][:200],
            )
        )
        self._log.info("Command from %s in %s: %s", sender, room_id, outcome)
        content = {
            "msgtype": "m.notice",
            "body": reply,
            "m.relates_to": {"m.in_reply_to": {"event_id": event["event_id"]}},
        }
        reply_id = txn_id("reply", event["event_id"])
        await self._bot.send_message(room_id, "m.room.message", content, reply_id)

    async def _run(
        self, command: Command, sender: str, room_id: RoomId, event: dict[str, Any]
    ) -> str:
        args = command.args
        match command.name:
            case CommandName.HELP:
                return help_text(self._prefix)
            case CommandName.DISPUTES:
                listing = await self._open_disputes()
                if room_id == self._management.room_id:
                    return listing
                notice = {"msgtype": "m.notice", "body": listing}
                sent_as = txn_id("evidence", event["event_id"])
                await self._bot.send_message(
                    self._evidence_room(), "m.room.message", notice, sent_as
                )
                return POSTED_ELSEWHERE.format(what="The list of open disputes")
            case CommandName.STATUS:
                return await self._status(args[0])
            case CommandName.LOCK | CommandName.UNLOCK:
                locking = command.name is CommandName.LOCK
                access = Access.LOCKED if locking else Access.OPEN
                record = await self._moderation.set_override(
                    TransactionId(args[0]), access, actor=sender
                )
                return (
                    f"Transaction {record.transaction_id} is {command.name}ed: its room is "
                    f"{self._transactions.access(record)} until the marketplace's next change."
                )
            case CommandName.RESOLVE:
                note = args[2] if len(args) > 2 else ""
                resolution = Resolution(args[1], note, resolved_by=sender, source="matrix")
                dispute = await self._disputes.resolve(DisputeId(args[0]), resolution)
                return f"Dispute {dispute.dispute_id} is resolved: {dispute.decision}."
            case CommandName.TRANSCRIPT:
                reply = await self._upload_transcript(args[0], sender, self._evidence_room())
                if room_id == self._management.room_id:
                    return reply
                return POSTED_ELSEWHERE.format(what=f"The transcript of {args[0]}")
            case CommandName.REMOVE:
                user_id, object_id = args
                await self._moderation.remove_member(UserId(user_id), object_id, actor=sender)
                return f"{user_id} was removed from the room of {object_id}."
            case _:
                assert_never(command.name)

    def _evidence_room(self) -> RoomId:
        room_id = self._management.room_id
        if room_id is None:
            raise InvalidState("there is no moderation room to post evidence in")
        return room_id

    async def _open_disputes(self) -> str:
        disputes = await self._dispute_records.open()
        if not disputes:
            return "No open disputes."
        return "\n".join(
            f"{d.dispute_id} on {d.transaction_id}, opened by the {d.opened_by}: {d.reason}"
            for d in disputes
        )

    async def _upload_transcript(self, object_id: str, sender: str, room_id: RoomId) -> str:
        document = await self._transcripts.of(object_id, actor=sender)
        data = json.dumps(document, ensure_ascii=False, indent=1).encode("utf-8")
        filename = f"transcript-{object_id}.json"
        uri = await self._bot.upload(data, "application/json", filename)
        content = {
            "msgtype": "m.file",
            "body": filename,
            "filename": filename,
            "url": uri,
            "info": {"mimetype": "application/json", "size": len(data)},
        }
        sent_as = txn_id("transcript", f"{room_id}{uri}")
        await self._bot.send_message(room_id, "m.room.message", content, sent_as)
        return (
            f"Transcript of {object_id}: {document['entry_count']} entries, final hash "
            f"{document['final_hash']} (recorded in the audit log; check the file with "
            "`python -m bridge verify`)."
        )

    async def _status(self, object_id: str) -> str:
        record = await self._transaction_records.get(TransactionId(object_id))
        if record is not None:
            return (
                f"Transaction {record.transaction_id} (“{record.title}”): {record.state}, room "
                f"{self._transactions.access(record)}"
                + (f", dispute {record.open_dispute} open" if record.open_dispute else "")
                + "."
            )
        dispute = await self._dispute_records.get(DisputeId(object_id))
        if dispute is not None:
            return (
                f"Dispute {dispute.dispute_id} on {dispute.transaction_id}: {dispute.state}"
                + (f" ({dispute.decision})" if dispute.decision else "")
                + "."
            )
        raise NotFound(f"no transaction or dispute {object_id}")
