"""Checking the parties of a new transaction: real accounts on allowed servers."""

from __future__ import annotations

import asyncio

from appservice.identifiers import server_of
from appservice.matrix import MatrixBot
from policy.ids import UserId

from .errors import InvalidRequest
from .models import Party


class PartyCheck:
    def __init__(self, bot: MatrixBot, servers: frozenset[str]) -> None:
        self._bot = bot
        self._servers = servers

    async def check(self, buyer: Party, seller: Party) -> None:
        """`InvalidRequest` naming the field of a party that cannot be in a transaction."""
        fields = {
            f"{role}.matrix_id": p.matrix_id for role, p in (("buyer", buyer), ("seller", seller))
        }
        for field, matrix_id in fields.items():
            self._allowed(field, matrix_id)
        # Both lookups at once: they are the only homeserver calls before the room is made.
        await asyncio.gather(*(self._exists(field, mxid) for field, mxid in fields.items()))

    async def check_one(self, field: str, matrix_id: UserId) -> None:
        """`InvalidRequest` naming ``field`` unless ``matrix_id`` is an existing account on an
        allowed server, and not the bot."""
        self._allowed(field, matrix_id)
        await self._exists(field, matrix_id)

    def _allowed(self, field: str, matrix_id: UserId) -> None:
        if server_of(matrix_id) not in self._servers:
            raise InvalidRequest(f"{field}: {matrix_id} is not on an allowed server", [field])
        if matrix_id == self._bot.user_id:
            raise InvalidRequest(f"{field}: the bot cannot be a party", [field])

    async def _exists(self, field: str, matrix_id: UserId) -> None:
        if not await self._bot.user_exists(matrix_id):
            raise InvalidRequest(f"{field}: {matrix_id} does not exist on the homeserver", [field])
