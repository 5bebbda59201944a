"""Which parts of an event's content are text its sender chose, and which are identifiers.

Every value in a content is one or the other, so that no field escapes the content rules:

    a technical key (TECHNICAL) whose value is in its grammar  -> an identifier: not read
    a declared number (NUMBERS: sizes, dimensions, durations)    -> a number: not read
    a key the spec or the common clients name (KNOWN_KEYS)       -> its name is not read
    anything else: every other string, every other number, a technical value out of its
    grammar, and the name of every key the sender made up        -> text, read by the rules

A grammar cannot tell an identifier a client generated from one a sender typed ("$07911..."
is a valid event id): what stays open is identifiers, which clients do not render as text.
"""

from __future__ import annotations

import re
from typing import Any

_NAME = re.compile(r"[a-z0-9_.\-]{1,128}", re.IGNORECASE)  # namespaced names: m.text, ...
_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.:]{1,255}")  # opaque ids: sessions, devices, answers
_MXC = re.compile(r"mxc://[A-Za-z0-9.\-:\[\]]{1,255}/[A-Za-z0-9_\-]{1,255}")
_EVENT_ID = re.compile(r"\$[A-Za-z0-9_\-+/=.:]{1,254}")
_ROOM_ID = re.compile(r"![A-Za-z0-9_\-+/=.:]{1,254}")
_USER_ID = re.compile(r"@[a-z0-9._=\-/+]{1,255}:[A-Za-z0-9.\-:\[\]]{1,255}")
_MIME = re.compile(r"[a-z0-9!#$&^_.+\-]{1,64}/[a-z0-9!#$&^_.+\-]{1,64}", re.IGNORECASE)
_GEO = re.compile(
    r"geo:-?\d{1,3}(\.\d{1,12})?,-?\d{1,3}(\.\d{1,12})?"
    r"(,-?\d{1,6}(\.\d{1,6})?)?(;u=\d{1,6}(\.\d{1,6})?)?"
)
_BLURHASH = re.compile(r"[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]{6,128}")

# Keys whose value clients never render, each with the grammar its value must follow.
TECHNICAL: dict[str, re.Pattern[str]] = {
    "msgtype": _NAME,
    "format": _NAME,
    "rel_type": _NAME,
    "algorithm": _NAME,
    "mimetype": _MIME,
    "url": _MXC,
    "thumbnail_url": _MXC,
    "event_id": _EVENT_ID,
    "redacts": _EVENT_ID,
    "room_id": _ROOM_ID,
    "user_id": _USER_ID,
    "user_ids": _USER_ID,  # m.mentions: a list of them
    "device_id": _TOKEN,
    "session_id": _TOKEN,
    "sender_key": _TOKEN,
    "ciphertext": _TOKEN,
    "call_id": _TOKEN,
    "party_id": _TOKEN,
    "id": _TOKEN,  # a poll answer's
    "geo_uri": _GEO,
    "xyz.amorgan.blurhash": _BLURHASH,
}
# Numbers a client declares about media and polls; any other number is text.
NUMBERS = frozenset({"size", "w", "h", "duration", "max_selections", "org.matrix.msc3488.ts"})
# Keys named by the spec or common clients: their names are not read as text (their values
# are, unless technical).
KNOWN_KEYS = frozenset(
    {
        *TECHNICAL,
        *NUMBERS,
        "body",
        "formatted_body",
        "filename",
        "info",
        "thumbnail_info",
        "m.new_content",
        "m.relates_to",
        "m.in_reply_to",
        "m.mentions",
        "room",
        "key",
        "is_falling_back",
        "org.marketplace.masked",
        "rules",
        "question",
        "answers",
        "kind",
        "description",
        "uri",
        "org.matrix.msc1767.text",
        "org.matrix.msc3381.poll.start",
        "org.matrix.msc3488.location",
        "org.matrix.msc3488.asset",
        "type",
        "m.text",
        "m.poll",
        "m.location",
    }
)


def is_identifier(key: str, value: Any) -> bool:
    """Whether ``value`` under ``key`` is an identifier in its grammar (or a list of them)."""
    grammar = TECHNICAL.get(key)
    if grammar is None:
        return False
    if isinstance(value, list):
        return all(isinstance(item, str) and grammar.fullmatch(item) for item in value)
    return isinstance(value, str) and grammar.fullmatch(value) is not None


def is_declared_number(key: str, value: Any) -> bool:
    """A number the content declares (not a bool, which carries no text)."""
    return isinstance(value, bool) or (isinstance(value, int | float) and key in NUMBERS)


def name_is_text(key: Any) -> bool:
    """Whether a key's name is the sender's own text."""
    return not isinstance(key, str) or key not in KNOWN_KEYS


def as_text(value: Any) -> str | None:
    """A scalar value read as text (a number's digits); None for what holds no text."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    return None
