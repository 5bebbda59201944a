"""Identifier types every layer shares: Matrix ids and the marketplace's own.

Each is a `NewType` of `str`: a plain string at run time, a distinct type to a type checker, so
a room id cannot be passed where a transaction id is meant. They live here because `policy`
imports nothing of the project, so every package may import them (`appservice` imports this
module and nothing else of `policy`).
"""

from __future__ import annotations

import re
from typing import NewType

UserId = NewType("UserId", str)  # @localpart:server
RoomId = NewType("RoomId", str)  # !opaque (room version 12) or !opaque:server
EventId = NewType("EventId", str)  # $opaque
RoomAlias = NewType("RoomAlias", str)  # #localpart:server

TransactionId = NewType("TransactionId", str)  # the marketplace's ids: 1 to 128 of [A-Za-z0-9._:-]
DisputeId = NewType("DisputeId", str)
MarketUserId = NewType("MarketUserId", str)


# Marketplace ids in Matrix localparts (room aliases, managed accounts), which allow only
# a-z 0-9 . _ = - / +: "_" -> "__", an upper-case letter -> "_" and the letter, ":" -> "=3a".
# Reversible: every escaped string reads back one way only.
_ESCAPED = re.compile(r"(?:[a-z0-9.\-]|__|_[a-z]|=3a)*")


def escape_id(market_id: str) -> str:
    return "".join(
        "__" if ch == "_" else f"_{ch.lower()}" if "A" <= ch <= "Z" else "=3a" if ch == ":" else ch
        for ch in market_id
    )


def unescape_id(escaped: str) -> str | None:
    """The id `escape_id` made ``escaped`` from; None if it made no such string."""
    if not _ESCAPED.fullmatch(escaped):
        return None
    return re.sub(
        r"__|_[a-z]|=3a",
        lambda m: {"__": "_", "=3a": ":"}.get(m.group(), m.group()[1:].upper()),
        escaped,
    )
