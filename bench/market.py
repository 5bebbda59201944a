"""A bridge process and a buyer and seller, for the benchmarks that go through Synapse."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import ClientSession
from nio import AsyncClient, JoinResponse

from tests.conftest import user_factory
from tests.harness import BridgeProcess, MarketClient, WebhookReceiver, unique_id

from .env import Env


@dataclass
class Market:
    """The bridge (its own process), the marketplace's client, and a buyer and a seller."""

    env: Env
    process: BridgeProcess
    api: MarketClient
    hooks: WebhookReceiver
    buyer: AsyncClient
    seller: AsyncClient
    buyer_uid: str
    seller_uid: str

    def pid(self) -> int | None:
        return self.process.process.pid if self.process.process else None

    def transaction(self) -> dict:
        return {
            "transaction_id": unique_id("bench"),
            "title": "Vintage bike",
            "buyer": {"user_id": self.buyer_uid, "matrix_id": self.buyer.user_id},
            "seller": {"user_id": self.seller_uid, "matrix_id": self.seller.user_id},
        }

    async def create(self) -> dict:
        status, body = await self.api.call("POST", "/transactions", self.transaction())
        if status != 201:
            raise RuntimeError(f"create answered {status}: {body}")
        return body

    async def open_room(self) -> dict:
        """A paid transaction whose room both parties joined."""
        created = await self.create()
        for party in (self.buyer, self.seller):
            response = await party.join(created["room_id"])
            if not isinstance(response, JoinResponse):
                raise RuntimeError(f"join failed: {response}")
        path = f"/transactions/{created['transaction_id']}/payment"
        status, body = await self.api.call("POST", path)
        if status != 200:
            raise RuntimeError(f"payment answered {status}: {body}")
        return created


@asynccontextmanager
async def market(env: Env) -> AsyncIterator[Market]:
    """The bridge on a fresh PostgreSQL database, webhooks to a receiver in this process."""
    hooks = WebhookReceiver()
    await hooks.start()
    database_url = await env.postgres()
    # One buyer sends to each room about once a second for the whole run: a flood by the
    # policy's default (10 in 10 s); the benchmark measures the pipeline, not the mute.
    config = env.bridge_config(
        database_url, webhooks={"url": hooks.url}, policy={"flood_messages": 10000}
    )
    process = BridgeProcess(config, env.workdir)
    try:
        # The tests' user factory: it needs only `.synapse`, which the env has.
        async with user_factory(env) as make, ClientSession() as session:  # type: ignore[arg-type]
            buyer, seller = (
                await make(unique_id("buyer")),
                await make(unique_id("seller")),
            )
            await process.start()
            base = f"http://127.0.0.1:{config.server.port}"
            api = MarketClient(session, base, config.api.token.get_secret_value(), None)
            yield Market(
                env,
                process,
                api,
                hooks,
                buyer,
                seller,
                unique_id("b"),
                unique_id("s"),
            )
    finally:
        if process.process is not None and process.process.poll() is None:
            process.kill(signal.SIGTERM)
        await hooks.stop()
