"""Room transcripts: the evidence export of a transaction or dispute room, hash-chained.

    header + stored room events (arrival order) -> transcript document
    transcript document                         -> [problem]   ([] when intact)

The bridge stores every room event as it arrived, so a transcript keeps what the homeserver
purges: the original content of a redacted message stays on its ``message`` entry, and the
``redaction`` entry repeats it under ``original`` for admins.

Document::

    {"format": "marketplace-transcript/1", "room_id", "room_kind", "transaction_id",
     "dispute_id", "generated_at": "2026-11-25T10:00:00.000Z", "entry_count": N,
     "entries": [...], "final_hash": "<hex>"}

Chain: ``genesis`` is the hash of the five header fields (format, room_id, room_kind,
transaction_id, dispute_id), which binds the entries to their room and transaction. Entry i
has ``index`` i and ``prev_hash`` (genesis for entry 0, else entry i-1's ``hash``), and its
``hash`` is the hash of the entry without ``hash``. ``final_hash`` is the last entry's hash,
or genesis when there are no entries. ``generated_at`` is not covered by any hash: it says
when the export was made, not what it holds. Hashes are sha256 over canonical JSON (sorted
keys, no spaces, UTF-8); a chain recomputed from scratch is only caught by comparing
``final_hash`` with a copy recorded elsewhere (the bridge's audit log).

Entries all have ``index``, ``kind``, ``event_id``, ``sender``, ``ts`` (origin_server_ts, an
int, or null), ``prev_hash`` and ``hash``, plus per kind (every key always present; null
when the event lacks it or it has the wrong type):

    message       msgtype, body, formatted_body, reply_to, media ({url, mimetype, size, name}
                  for m.image, m.file, m.video and m.audio, else null), original (what the
                  sender wrote when the homeserver masked contact details before delivery,
                  for admins; null otherwise)
    edit          replaces, msgtype, body (from m.new_content, else the content)
    refused_edit  replaces, msgtype, body, reason: an edit clients ignore, so it is no
                  evidence of what the edited message said: its sender did not send the
                  message it claims to edit, or that message is not earlier in this room
    redaction     redacts, reason, original ({type, sender, content} of the redacted event
                  when it has an entry earlier in this transcript, else null)
    membership    user_id (the state key), membership, displayname, reason
    power_levels  content
    state         type, state_key, content (any other state event)
    erased        nothing more: its sender was erased at the marketplace's request (GDPR) and
                  the bridge replaced what they wrote with this tombstone (a top-level
                  ``org.marketplace.erased`` key on the stored event, which no client can set)

Skipped: reactions, receipts, unknown non-state types (encrypted events and stickers too),
anything lacking a string event_id, type or sender, and repeats of an event id already seen
(redelivered events). A content that is missing or not an object counts as ``{}``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .messages import MEDIA_MSGTYPES

TRANSCRIPT_FORMAT = "marketplace-transcript/1"
HEADER_FIELDS = ("format", "room_id", "room_kind", "transaction_id", "dispute_id")
DOCUMENT_FIELDS = (*HEADER_FIELDS, "generated_at", "entry_count", "entries", "final_hash")
ROOM_KINDS = ("transaction", "dispute")
ERASED_KEY = "org.marketplace.erased"  # top level of a stored event: its content is gone


def transcript_hash(value: Any) -> str:
    """sha256 hex of the canonical JSON of ``value``.

    Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"),
    ensure_ascii=False)`` in UTF-8. A lone surrogate (valid in JSON text, not in UTF-8) is
    encoded as its three bytes instead of failing; nothing else is affected.
    """
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def build_transcript(
    header: dict[str, Any],
    events: Iterable[dict[str, Any]],
    generated_at: int,
    originals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The transcript of a room from its stored events.

    ``header``: room_id, room_kind ("transaction" or "dispute"), transaction_id and
    dispute_id (None or absent for a transaction room). ``events``: Matrix room events as the
    homeserver sent them, in arrival order. ``generated_at``: ms since the epoch, rendered as
    ISO 8601 UTC with milliseconds; it is not covered by the hashes. ``originals``: the
    content each masked message had before the homeserver masked it, by event id.
    """
    head = {
        "format": TRANSCRIPT_FORMAT,
        "room_id": header.get("room_id"),
        "room_kind": header.get("room_kind"),
        "transaction_id": header.get("transaction_id"),
        "dispute_id": header.get("dispute_id"),
    }
    prev_hash = transcript_hash(head)
    entries: list[dict[str, Any]] = []
    seen: dict[str, dict[str, Any]] = {}  # event id -> {type, sender, content} of entries
    ids: set[str] = set()
    for event in events:
        if not isinstance(event, dict):
            continue
        event_id, event_type, sender = (event.get(k) for k in ("event_id", "type", "sender"))
        if not (_text(event_id) and _text(event_type) and _text(sender)) or event_id in ids:
            continue
        ids.add(event_id)
        fields = _fields(event, seen)
        if fields is None:
            continue
        if fields["kind"] == "message":
            original = (originals or {}).get(event_id)
            fields["original"] = copy.deepcopy(original) if isinstance(original, dict) else None
        ts = event.get("origin_server_ts")
        entry = {
            "index": len(entries),
            "kind": fields.pop("kind"),
            "event_id": event_id,
            "sender": sender,
            "ts": ts if _int(ts) else None,
            **fields,
            "prev_hash": prev_hash,
        }
        entry["hash"] = prev_hash = transcript_hash(entry)
        entries.append(entry)
        seen[event_id] = {
            "type": event_type,
            "sender": sender,
            "content": copy.deepcopy(_content(event)),
        }
    return {
        **head,
        "generated_at": iso_time(generated_at),
        "entry_count": len(entries),
        "entries": entries,
        "final_hash": prev_hash,
    }


def verify_transcript(document: Any) -> list[str]:
    """The problems of a transcript, each naming where it is; [] when it is intact.

    Recomputes the genesis from the header, then each entry's index, prev_hash and hash, the
    entry count and the final hash. Never raises, whatever JSON value it is given.
    """
    if not isinstance(document, dict):
        return [f"the transcript is not a JSON object but {_json_type(document)}"]
    problems: list[str] = []
    if document.get("format") != TRANSCRIPT_FORMAT:
        problems.append(
            f"the format is {_show(document.get('format'))}, not {TRANSCRIPT_FORMAT!r}"
        )
    problems += _header_problems(document)
    extra = sorted(str(key) for key in document if key not in DOCUMENT_FIELDS)
    if extra:
        problems.append(f"unknown top-level fields (not covered by the hashes): {extra}")
    genesis = _safe_hash({field: document.get(field) for field in HEADER_FIELDS})
    entries = document.get("entries")
    if not isinstance(entries, list):
        problems.append(f"entries is not a list but {_json_type(entries)}")
        return problems
    count = document.get("entry_count")
    if not _int(count) or count != len(entries):
        problems.append(
            f"entry_count is {_show(count)} but there are {len(entries)} entries: "
            "entries were removed or added, or the count was changed"
        )
    previous: dict[str, Any] | None = None  # None before entry 0 and after a broken entry
    previous_hash: Any = genesis
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append(f"entry {i} is not a JSON object but {_json_type(entry)}")
            previous, previous_hash = None, None
            continue
        problems += _entry_problems(i, entry, previous, previous_hash)
        previous, previous_hash = entry, entry.get("hash")
    problems += _final_hash_problems(document.get("final_hash"), entries, genesis)
    return problems


def iso_time(ms: int) -> str:
    """ms since the epoch as ISO 8601 UTC with milliseconds and 'Z' (exact, no float)."""
    when = datetime.fromtimestamp(ms // 1000, tz=UTC) + timedelta(milliseconds=ms % 1000)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(event: dict[str, Any], seen: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """The kind and the kind's fields of an event's entry; None for events left out."""
    event_type = event["type"]
    content = _content(event)
    state_key = event.get("state_key")
    is_state = "state_key" in event
    if event.get(ERASED_KEY) is True and not is_state:
        return {"kind": "erased"}
    if event_type == "m.room.redaction" and not is_state:
        redacts = content.get("redacts")  # room v11 moved it into the content
        if not _text(redacts):
            redacts = event.get("redacts")
        redacts = redacts if _text(redacts) else None
        original = seen.get(redacts) if redacts is not None else None
        return {
            "kind": "redaction",
            "redacts": redacts,
            "reason": _str(content.get("reason")),
            "original": copy.deepcopy(original),
        }
    if event_type == "m.room.message" and not is_state:
        relates = content.get("m.relates_to")
        relates = relates if isinstance(relates, dict) else {}
        if relates.get("rel_type") == "m.replace":
            new_content = content.get("m.new_content")
            new_content = new_content if isinstance(new_content, dict) else content
            replaces = _str(relates.get("event_id"))
            fields = {
                "kind": "edit",
                "replaces": replaces,
                "msgtype": _str(new_content.get("msgtype")),
                "body": _str(new_content.get("body")),
            }
            original = seen.get(replaces) if replaces is not None else None
            if original is None:
                return {**fields, "kind": "refused_edit", "reason": "edits no earlier message"}
            if original["sender"] != event["sender"]:
                reason = "edits a message of another sender"
                return {**fields, "kind": "refused_edit", "reason": reason}
            return fields
        reply = relates.get("m.in_reply_to")
        msgtype = _str(content.get("msgtype"))
        return {
            "kind": "message",
            "msgtype": msgtype,
            "body": _str(content.get("body")),
            "formatted_body": _str(content.get("formatted_body")),
            "reply_to": _str(reply.get("event_id")) if isinstance(reply, dict) else None,
            "media": _media(content) if msgtype in MEDIA_MSGTYPES else None,
        }
    if not isinstance(state_key, str):
        return None  # reactions, receipts, encrypted and unknown events; broken state events
    if event_type == "m.room.member":
        return {
            "kind": "membership",
            "user_id": state_key,
            "membership": _str(content.get("membership")),
            "displayname": _str(content.get("displayname")),
            "reason": _str(content.get("reason")),
        }
    if event_type == "m.room.power_levels":
        return {"kind": "power_levels", "content": copy.deepcopy(content)}
    return {
        "kind": "state",
        "type": event_type,
        "state_key": state_key,
        "content": copy.deepcopy(content),
    }


def _media(content: dict[str, Any]) -> dict[str, Any]:
    info = content.get("info")
    info = info if isinstance(info, dict) else {}
    url = content.get("url")
    encrypted = content.get("file")
    if not _text(url) and isinstance(encrypted, dict):
        url = encrypted.get("url")  # an encrypted attachment carries its mxc in "file"
    size = info.get("size")
    return {
        "url": _str(url),
        "mimetype": _str(info.get("mimetype")),
        "size": size if _int(size) else None,
        "name": _str(content.get("filename")) or _str(content.get("body")),
    }


def _header_problems(document: dict[str, Any]) -> list[str]:
    problems = []
    for field in ("room_id", "transaction_id"):
        if not _text(document.get(field)):
            problems.append(f"the header's {field} is {_show(document.get(field))}, not an id")
    if document.get("room_kind") not in ROOM_KINDS:
        problems.append(
            f"the header's room_kind is {_show(document.get('room_kind'))}, "
            "not 'transaction' or 'dispute'"
        )
    if "dispute_id" not in document:
        problems.append("the header has no dispute_id (null for a transaction room)")
    elif document["dispute_id"] is not None and not _text(document["dispute_id"]):
        problems.append(f"the header's dispute_id is {_show(document['dispute_id'])}, not an id")
    return problems


def _entry_problems(
    i: int, entry: dict[str, Any], previous: dict[str, Any] | None, previous_hash: Any
) -> list[str]:
    problems = []
    name = f"entry {i}" + (f" ({entry['event_id']})" if _text(entry.get("event_id")) else "")
    index = entry.get("index")
    if index != i or not _int(index):
        # Only where the numbering breaks: one removed entry is one problem, not one per
        # entry after it.
        prev_index = previous.get("index") if previous is not None else i - 1
        if not (_int(index) and _int(prev_index) and index == prev_index + 1):
            problems.append(
                f"{name} has index {_show(index)}, expected {i}: "
                "entries were removed, added or reordered here"
            )
    if i == 0:
        if entry.get("prev_hash") != previous_hash:
            problems.append(
                f"{name} does not follow the header: the header (format, room_id, room_kind, "
                "transaction_id or dispute_id) was changed, or entries before it were removed"
            )
    elif previous_hash is not None and entry.get("prev_hash") != previous_hash:
        problems.append(
            f"{name} does not follow entry {i - 1}: its prev_hash is not entry {i - 1}'s "
            f"hash, so entries were removed, added or reordered here, or entry {i - 1} was "
            "edited and its hash recomputed"
        )
    recorded = entry.get("hash")
    computed = _safe_hash({key: value for key, value in entry.items() if key != "hash"})
    if not isinstance(recorded, str):
        problems.append(f"{name} has no hash")
    elif computed is None:
        problems.append(f"{name} cannot be hashed: it is not plain JSON")
    elif recorded != computed:
        problems.append(f"{name} was edited: its hash does not match its fields")
    return problems


def _final_hash_problems(final_hash: Any, entries: list[Any], genesis: str | None) -> list[str]:
    if not isinstance(final_hash, str):
        return [f"final_hash is {_show(final_hash)}, not a hash"]
    if not entries:
        if final_hash != genesis:
            return ["final_hash does not match the header of an empty transcript"]
        return []
    last = entries[-1]
    if isinstance(last, dict) and final_hash != last.get("hash"):
        return [
            f"final_hash is not the hash of the last entry (entry {len(entries) - 1}): entries "
            "were removed or added at the end, or the final hash was changed"
        ]
    return []


def _safe_hash(value: Any) -> str | None:
    try:
        return transcript_hash(value)
    except (TypeError, ValueError, RecursionError):
        return None  # non-JSON values handed in from Python, or nesting too deep to walk


def _content(event: dict[str, Any]) -> dict[str, Any]:
    content = event.get("content")
    return content if isinstance(content, dict) else {}


def _text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: Any) -> str:
    """A short rendering of a found value for a problem sentence."""
    if isinstance(value, str):
        return repr(value if len(value) <= 80 else value[:77] + "...")
    if value is None or isinstance(value, bool | float):
        return json.dumps(value)
    if _int(value):
        return str(value) if abs(value) < 10**30 else "a number"
    return _json_type(value)
