"""Identifier types every layer shares: Matrix ids and the marketplace's own.

Each is a `NewType` of `str`: a plain string at run time, a distinct type to a type checker, so
a room id cannot be passed where a transaction id is meant. They live here because `policy`
imports nothing of the project, so every package may import them (`appservice` imports this
module and nothing else of `policy`).
"""

from __future__ import annotations

from typing import NewType

UserId = NewType("UserId", str)  # @localpart:server
RoomId = NewType("RoomId", str)  # !opaque (room version 12) or !opaque:server
EventId = NewType("EventId", str)  # $opaque
RoomAlias = NewType("RoomAlias", str)  # #localpart:server

TransactionId = NewType("TransactionId", str)  # the marketplace's ids: 1 to 128 of [A-Za-z0-9._:-]
DisputeId = NewType("DisputeId", str)
MarketUserId = NewType("MarketUserId", str)
