from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestClient, TestServer
from nio import AsyncClient

from bridge.app import Bridge
from tests.conftest import UserFactory
from tests.harness import (
    Homeserver,
    MarketClient,
    free_port,
    make_config,
    random_secret,
    running_bridge,
    unique_id,
)


@dataclass
class Api:
    bridge: Bridge
    client: TestClient
    hs_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.hs_token}"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    """The bridge's HTTP app on a test server, without a homeserver behind it."""
    hs_token = random_secret()
    # A homeserver URL where nothing listens: these tests must never reach one.
    nowhere = f"http://127.0.0.1:{free_port()}"
    config = make_config(database_url=database_url, homeserver_url=nowhere, hs_token=hs_token)
    bridge = await Bridge.open(config)
    client = TestClient(TestServer(bridge.web_app))
    await client.start_server()
    try:
        yield Api(bridge, client, hs_token)
    finally:
        await client.close()
        await bridge.close()


@dataclass
class Market:
    client: MarketClient
    bridge: Bridge
    buyer: AsyncClient
    seller: AsyncClient

    def new_transaction(self, **changes: object) -> dict:
        body = {
            "transaction_id": unique_id("txn"),
            "title": "Vintage bike",
            "buyer": {"user_id": unique_id("b"), "matrix_id": self.buyer.user_id},
            "seller": {"user_id": unique_id("s"), "matrix_id": self.seller.user_id},
        }
        return {**body, **changes}

    async def created(self, **changes: object) -> dict:
        status, body = await self.client.call(
            "POST", "/transactions", self.new_transaction(**changes)
        )
        assert status == 201, body
        return body


@pytest.fixture
async def market(
    homeserver: Homeserver, database_url: str, make_user: UserFactory, api_timings: dict
) -> AsyncIterator[Market]:
    token = random_secret()
    config = homeserver.bridge_config(database_url, api={"token": token})
    async with running_bridge(config) as bridge, ClientSession() as session:
        client = MarketClient(
            session, f"http://127.0.0.1:{config.server.port}", token, api_timings
        )
        yield Market(client, bridge, await make_user("buyer"), await make_user("seller"))
