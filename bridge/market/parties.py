"""Checking the parties of a new transaction: real accounts on allowed servers."""

from __future__ import annotations

import asyncio

from appservice.identifiers import server_of
from appservice.matrix import MatrixBot

from .errors import InvalidRequest
from .models import Party


class PartyCheck:
    def __init__(self, bot: MatrixBot, servers: frozenset[str]) -> None:
        self._bot = bot
        self._servers = servers

    async def check(self, buyer: Party, seller: Party) -> None:
        """`InvalidRequest` naming the field of a party that cannot be in a transaction."""
        parties = {"buyer": buyer, "seller": seller}
        for role, party in parties.items():
            field = f"{role}.matrix_id"
            if server_of(party.matrix_id) not in self._servers:
                raise InvalidRequest(
                    f"{field}: {party.matrix_id} is not on an allowed server", [field]
                )
            if party.matrix_id == self._bot.user_id:
                raise InvalidRequest(f"{field}: the bot cannot be a party", [field])
        # Both lookups at once: they are the only homeserver calls before the room is made.
        found = await asyncio.gather(
            *(self._bot.user_exists(p.matrix_id) for p in (buyer, seller))
        )
        for (role, party), exists in zip(parties.items(), found, strict=True):
            if not exists:
                field = f"{role}.matrix_id"
                raise InvalidRequest(
                    f"{field}: {party.matrix_id} does not exist on the homeserver", [field]
                )
