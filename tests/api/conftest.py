from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bridge.app import Bridge
from tests.harness import free_port, make_config, random_secret


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
    bridge = Bridge(config)
    await bridge.open()
    client = TestClient(TestServer(bridge.web_app))
    await client.start_server()
    try:
        yield Api(bridge, client, hs_token)
    finally:
        await client.close()
        await bridge.close()
