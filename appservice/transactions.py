"""What a homeserver transaction carries, parsed defensively.

Synapse sends ``{"events": [...], "ephemeral": [...]}``. Each room event either parses into a
`RoomEvent` or becomes a `MalformedEvent` that is kept (to be parked as dead) rather than
refused: one bad event must not stall every room behind it. Read receipts become `Receipt`s;
typing and presence are dropped here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from policy.ids import EventId, RoomId, UserId

from .identifiers import MAX_ID_BYTES

# The unstable name Synapse used for the ephemeral list before MSC2409 was merged.
_UNSTABLE_EPHEMERAL = "de.sorunome.msc2409.ephemeral"


@dataclass(frozen=True, slots=True)
class RoomEvent:
    event_id: EventId
    room_id: RoomId
    type: str
    sender: UserId
    origin_server_ts: int
    json_text: str  # the event as received, re-serialised


@dataclass(frozen=True, slots=True)
class MalformedEvent:
    key: str  # the event id when it has a usable one, else a digest of the content
    room_id: str  # "" when the event carries no usable room id
    reason: str
    json_text: str


@dataclass(frozen=True, slots=True)
class Receipt:
    room_id: RoomId
    user_id: UserId
    event_id: EventId
    ts: int


@dataclass(frozen=True, slots=True)
class Transaction:
    txn_id: str
    events: list[RoomEvent | MalformedEvent]  # in the order the homeserver sent them
    receipts: list[Receipt]


class BadTransaction(ValueError):
    """The body is not a transaction at all (as opposed to holding a bad event)."""


def parse_transaction(txn_id: str, body: Any) -> Transaction:
    if not isinstance(body, dict):
        raise BadTransaction("the body must be a JSON object")
    raw_events = body.get("events", [])
    ephemeral = body.get("ephemeral", body.get(_UNSTABLE_EPHEMERAL, []))
    if not isinstance(raw_events, list):
        raise BadTransaction("'events' must be a list")
    if not isinstance(ephemeral, list):
        raise BadTransaction("'ephemeral' must be a list")
    events = [parse_room_event(raw) for raw in raw_events]
    receipts = [r for edu in ephemeral for r in parse_receipts(edu)]
    return Transaction(txn_id=txn_id, events=events, receipts=receipts)


def parse_room_event(raw: Any) -> RoomEvent | MalformedEvent:
    text = json.dumps(raw, separators=(",", ":"), sort_keys=True)
    if not isinstance(raw, dict):
        return _malformed(raw, text, "the event is not a JSON object")
    event_id, room_id = raw.get("event_id"), raw.get("room_id")
    event_type, sender, ts = raw.get("type"), raw.get("sender"), raw.get("origin_server_ts")
    problem = (
        _id_problem("event_id", event_id, "$")
        or _id_problem("room_id", room_id, "!")
        or _id_problem("sender", sender, "@")
        or _id_problem("type", event_type, "")
    )
    if problem is None and (not isinstance(ts, int) or isinstance(ts, bool) or ts < 0):
        problem = "origin_server_ts must be a non-negative integer"
    if problem is None and not isinstance(raw.get("content"), dict):
        problem = "content must be a JSON object"
    if problem is not None:
        return _malformed(raw, text, problem)
    return RoomEvent(EventId(event_id), RoomId(room_id), event_type, UserId(sender), ts, text)


def parse_receipts(edu: Any) -> list[Receipt]:
    """Main-timeline ``m.read`` receipts of one ephemeral event; anything else yields nothing.

    Receipts inside a thread (``thread_id`` other than ``main``) do not say how far the room's
    timeline was read, so they are not read positions.
    """
    if not isinstance(edu, dict) or edu.get("type") != "m.receipt":
        return []
    room_id, content = edu.get("room_id"), edu.get("content")
    if _id_problem("room_id", room_id, "!") or not isinstance(content, dict):
        return []
    latest: dict[str, Receipt] = {}
    for event_id, by_type in content.items():
        if _id_problem("event_id", event_id, "$") or not isinstance(by_type, dict):
            continue
        readers = by_type.get("m.read")
        if not isinstance(readers, dict):
            continue
        for user_id, info in readers.items():
            if _id_problem("user_id", user_id, "@") or not isinstance(info, dict):
                continue
            ts = info.get("ts")
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                continue
            if info.get("thread_id", "main") != "main":
                continue
            if user_id not in latest or ts > latest[user_id].ts:
                latest[user_id] = Receipt(RoomId(room_id), UserId(user_id), EventId(event_id), ts)
    return list(latest.values())


def _malformed(raw: Any, text: str, reason: str) -> MalformedEvent:
    event_id = raw.get("event_id") if isinstance(raw, dict) else None
    room_id = raw.get("room_id") if isinstance(raw, dict) else None
    if _id_problem("event_id", event_id, "$"):
        event_id = "malformed:" + hashlib.sha256(text.encode()).hexdigest()
    if _id_problem("room_id", room_id, "!"):
        room_id = ""
    return MalformedEvent(key=event_id, room_id=room_id, reason=reason, json_text=text)


def _id_problem(name: str, value: Any, sigil: str) -> str | None:
    """Why ``value`` cannot be stored as an identifier, or None when it can.

    NUL characters and lone surrogates are refused because PostgreSQL text cannot hold them.
    """
    if not isinstance(value, str) or not value.startswith(sigil) or len(value) <= len(sigil):
        return f"{name} must be a non-empty string" + (f" starting with {sigil}" if sigil else "")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{name} is not valid UTF-8"
    if size > MAX_ID_BYTES:
        return f"{name} is longer than {MAX_ID_BYTES} bytes"
    if "\x00" in value:
        return f"{name} contains a NUL character"
    return None
