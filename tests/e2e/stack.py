"""Helpers for end-to-end tests: a bridge stack with a marketplace client and two parties."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import ClientSession
from mautrix.appservice import AppServiceAPI
from nio import (
    AsyncClient,
    JoinResponse,
    RoomGetStateEventResponse,
    RoomMessagesResponse,
    RoomSendResponse,
)
from pydantic import AnyHttpUrl

from appservice.matrix import MatrixBot
from bridge.app import Bridge
from bridge.config import Config
from tests.harness import (
    Homeserver,
    MarketClient,
    OffsetClock,
    fresh_database,
    running_bridge,
    unique_id,
)


@dataclass
class Stack:
    """A bridge on the session's Synapse, the marketplace's client, a buyer and a seller."""

    config: Config
    session: ClientSession
    buyer: AsyncClient
    seller: AsyncClient
    timings: dict
    bridge: Bridge | None = None
    clock: OffsetClock = field(default_factory=OffsetClock)  # moved by tests of timers
    created: list[dict] = field(default_factory=list)
    # A marketplace user id is bound to its Matrix ID for good: one per party per stack.
    buyer_uid: str = field(default_factory=lambda: unique_id("u"))
    seller_uid: str = field(default_factory=lambda: unique_id("u"))

    @property
    def api(self) -> MarketClient:
        base = f"http://127.0.0.1:{self.config.server.port}"
        return MarketClient(
            self.session, base, self.config.api.token.get_secret_value(), self.timings
        )

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Bridge]:
        async with running_bridge(self.config, self.clock) as bridge:
            self.bridge = bridge
            yield bridge

    def transaction(self) -> dict:
        return {
            "transaction_id": unique_id("order"),
            "title": "Vintage <bike> & helmet",
            "buyer": {"user_id": self.buyer_uid, "matrix_id": self.buyer.user_id},
            "seller": {"user_id": self.seller_uid, "matrix_id": self.seller.user_id},
        }

    async def create(self) -> str:
        status, body = await self.api.call("POST", "/transactions", self.transaction())
        assert status == 201, body
        self.created.append(body)
        return body["room_id"]

    async def transition(self, room_id: str, suffix: str, body: dict | None = None) -> dict:
        (txn,) = [t for t in self.created if t["room_id"] == room_id]
        status, answer = await self.api.call(
            "POST", f"/transactions/{txn['transaction_id']}{suffix}", body
        )
        assert status == 200, answer
        return answer


@asynccontextmanager
async def hardened_stack(
    homeserver: Homeserver, api_timings: dict, tmp_path: Path, **sections: dict[str, Any]
) -> AsyncIterator[Stack]:
    """A stack on the hardened homeserver (our module) whose sessions hand out the client
    gateway's address, on a fresh SQLite database; ``sections`` change the bridge's config."""
    gateway = homeserver.gateway
    assert gateway is not None
    gateway_section = gateway.config.gateway.model_dump(mode="json")
    async with fresh_database("sqlite", tmp_path) as url, ClientSession() as session:
        config = homeserver.bridge_config(url, gateway=gateway_section, **sections)
        yield Stack(config, session, None, None, api_timings)  # type: ignore[arg-type]


async def join(client: AsyncClient, room_id: str) -> None:
    response = await client.join(room_id)
    assert isinstance(response, JoinResponse), response


async def send(client: AsyncClient, room_id: str, body: str):
    return await client.room_send(room_id, "m.room.message", {"msgtype": "m.text", "body": body})


async def assert_refused(client: AsyncClient, room_id: str) -> None:
    response = await send(client, room_id, "can I post?")
    assert not isinstance(response, RoomSendResponse), "the room should be read-only"
    assert response.status_code == "M_FORBIDDEN"


async def state(client: AsyncClient, room_id: str, event_type: str) -> dict:
    response = await client.room_get_state_event(room_id, event_type)
    assert isinstance(response, RoomGetStateEventResponse), response
    return response.content


async def timeline(client: AsyncClient, room_id: str) -> list[dict]:
    response = await client.room_messages(room_id, limit=100)
    assert isinstance(response, RoomMessagesResponse), response
    return [event.source for event in response.chunk]


def with_webhooks(config: Config, url: str, **changes: object) -> Config:
    """The config with webhooks sent to ``url`` (and other webhook settings changed)."""
    webhooks = config.webhooks.model_copy(update={"url": AnyHttpUrl(url), **changes})
    return config.model_copy(update={"webhooks": webhooks})


def with_admin(config: Config, admin: str) -> Config:
    """The config with ``admin`` as the marketplace's only admin."""
    rooms = config.rooms.model_copy(update={"admins": [admin]})
    return config.model_copy(update={"rooms": rooms})


def with_policy(config: Config, **changes: object) -> Config:
    """The config with policy settings changed (flood limits, mute length, ...)."""
    return config.model_copy(update={"policy": config.policy.model_copy(update=changes)})


def with_deals(config: Config, reminders: dict, deals: dict) -> Config:
    """The config with reminder and deal settings changed (seconds, or None for off)."""
    return config.model_copy(
        update={
            "reminders": config.reminders.model_copy(update=reminders),
            "deals": config.deals.model_copy(update=deals),
        }
    )


def appservice_bot(config: Config, session: ClientSession) -> MatrixBot:
    """The appservice token used directly, behind the bridge's back (to tamper with rooms)."""
    api = AppServiceAPI(
        str(config.homeserver.url).rstrip("/"),
        config.bot_mxid,
        config.appservice.as_token.get_secret_value(),
        log=logging.getLogger("tests.tamper"),
        client_session=session,
    )
    return MatrixBot(api, config.bot_mxid)
