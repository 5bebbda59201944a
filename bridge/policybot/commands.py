"""Admin commands from Matrix: parsed and authorised in `policy.commands`, carried out here.

    inbox worker (a party's or admin's message, after it is stored as done)
      -> parse (not addressed to the bot: nothing) -> may this sender command in this room?
      -> run through `Market`, as the API would -> reply in the room -> audit row

Refusals change nothing but the audit trail and a short reply. A command runs at most once:
a crash between storing the event and running it loses the command (the admin sees no reply).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from appservice.matrix import HomeserverUnavailable, MatrixBot, MatrixError
from bridge.config.settings import Config
from bridge.market.audit import AuditEntry
from bridge.market.errors import MarketError
from bridge.market.records.transactions import Records
from bridge.market.transactions import Market
from bridge.policybot.transcripts import Transcripts
from policy.commands import Command, Refusal, help_text, may_command, parse_command
from policy.states import Access


class CommandRunner:
    def __init__(
        self,
        config: Config,
        market: Market,
        records: Records,
        transcripts: Transcripts,
        bot: MatrixBot,
    ) -> None:
        self._prefix = config.rooms.command_prefix
        self._admins = tuple(config.rooms.admins)
        self._market = market
        self._records = records
        self._transcripts = transcripts
        self._bot = bot
        self._log = logging.getLogger("bridge.commands")

    async def handle(self, room_id: str, room_kind: str | None, event: dict[str, Any]) -> None:
        parsed = parse_command((event.get("content") or {}).get("body"), self._prefix)
        if parsed is None:
            return
        sender = event.get("sender", "")
        if room_kind is None and room_id == self._market.management_room:
            room_kind = "management"
        text = (event["content"]["body"])[:200]
        if not may_command(sender, self._admins, room_kind):
            outcome, reply = (
                "refused",
                (
                    "Only the marketplace's admins can give commands, in the moderation room or a "
                    "dispute room."
                ),
            )
        elif isinstance(parsed, Refusal):
            outcome, reply = "refused", parsed.reason
        else:
            try:
                outcome, reply = "done", await self._run(parsed, sender, room_id)
            except MarketError as e:
                outcome, reply = "failed", e.message
            except (HomeserverUnavailable, MatrixError) as e:
                outcome, reply = "failed", f"The homeserver did not answer ({e}); try again."
        await self._records.audit(
            AuditEntry(
                actor=sender,
                action="command",
                room_id=room_id,
                outcome=outcome,
                reason=reply[:200] if outcome != "done" else None,
                detail=text,
            )
        )
        self._log.info("Command from %s in %s: %s", sender, room_id, outcome)
        txn_id = "reply-" + hashlib.sha256(event["event_id"].encode()).hexdigest()[:32]
        content = {
            "msgtype": "m.notice",
            "body": reply,
            "m.relates_to": {"m.in_reply_to": {"event_id": event["event_id"]}},
        }
        await self._bot.send_message(room_id, "m.room.message", content, txn_id)

    async def _run(self, command: Command, sender: str, room_id: str) -> str:
        args = command.args
        if command.name == "help":
            return help_text(self._prefix)
        if command.name == "disputes":
            disputes = await self._records.open_disputes()
            if not disputes:
                return "No open disputes."
            return "\n".join(
                f"{d.dispute_id} on {d.transaction_id}, opened by the {d.opened_by}: {d.reason}"
                for d in disputes
            )
        if command.name == "status":
            return await self._status(args[0])
        if command.name in ("lock", "unlock"):
            access = Access.LOCKED if command.name == "lock" else Access.OPEN
            record = await self._market.set_override(args[0], access, actor=sender)
            return (
                f"Transaction {record.transaction_id} is {command.name}ed: its room is "
                f"{self._market.access_for(record)} until the marketplace's next change."
            )
        if command.name == "resolve":
            note = args[2] if len(args) > 2 else ""
            dispute = await self._market.resolve_dispute(
                args[0], args[1], note, resolved_by=sender, source="matrix"
            )
            return f"Dispute {dispute.dispute_id} is resolved: {dispute.decision}."
        if command.name == "transcript":
            return await self._upload_transcript(args[0], sender, room_id)
        user_id, object_id = args  # remove
        await self._market.remove_member(user_id, object_id, actor=sender)
        return f"{user_id} was removed from the room of {object_id}."

    async def _upload_transcript(self, object_id: str, sender: str, room_id: str) -> str:
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
        txn_id = "transcript-" + hashlib.sha256(f"{room_id}{uri}".encode()).hexdigest()[:32]
        await self._bot.send_message(room_id, "m.room.message", content, txn_id)
        return (
            f"Transcript of {object_id}: {document['entry_count']} entries, final hash "
            f"{document['final_hash']} (recorded in the audit log; check the file with "
            "`python -m bridge verify`)."
        )

    async def _status(self, object_id: str) -> str:
        record = await self._records.get_transaction(object_id)
        if record is not None:
            return (
                f"Transaction {record.transaction_id} (“{record.title}”): {record.state}, room "
                f"{self._market.access_for(record)}"
                + (f", dispute {record.open_dispute} open" if record.open_dispute else "")
                + "."
            )
        dispute = await self._records.get_dispute(object_id)
        if dispute is not None:
            return (
                f"Dispute {dispute.dispute_id} on {dispute.transaction_id}: {dispute.state}"
                + (f" ({dispute.decision})" if dispute.decision else "")
                + "."
            )
        raise MarketError.not_found(f"no transaction or dispute {object_id}")
