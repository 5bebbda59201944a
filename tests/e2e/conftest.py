"""A real Synapse from the venv for the session, real bridges, real Matrix clients (nio).

The bridge's port is fixed for the session because Synapse reads the registration (with the
bridge's URL) once at start; bridges therefore run one at a time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from nio import AsyncClient

from bridge.__main__ import write_registration
from bridge.app import Bridge
from bridge.config import Config
from bridge.devstack import LocalSynapse
from tests.harness import SYNAPSE_READY, free_port, make_config, random_secret

CONNECT_TIMEOUT = 30.0


@dataclass
class Homeserver:
    synapse: LocalSynapse
    bridge_port: int
    as_token: str
    hs_token: str

    def bridge_config(self, database_url: str) -> Config:
        return make_config(
            database_url=database_url,
            homeserver_url=self.synapse.url,
            bridge_port=self.bridge_port,
            as_token=self.as_token,
            hs_token=self.hs_token,
        )


@pytest.fixture(scope="session")
def homeserver(tmp_path_factory: pytest.TempPathFactory, pytestconfig) -> Homeserver:
    root = tmp_path_factory.mktemp("homeserver")
    bridge_port = free_port()
    as_token, hs_token = random_secret(), random_secret()
    registration = root / "registration.yaml"
    placeholder = make_config(
        database_url="sqlite:unused.db",
        bridge_port=bridge_port,
        as_token=as_token,
        hs_token=hs_token,
    )
    write_registration(placeholder, registration)
    synapse = LocalSynapse(
        root / "synapse",
        server_name="localhost",
        port=free_port(),
        registration_files=[registration],
        relaxed_rate_limits=True,
    )
    synapse.start()
    pytestconfig.stash.setdefault(SYNAPSE_READY, []).append(synapse.ready_seconds)
    try:
        yield Homeserver(synapse, bridge_port, as_token, hs_token)
    finally:
        synapse.stop()


@asynccontextmanager
async def running_bridge(config: Config) -> AsyncIterator[Bridge]:
    """A bridge listening on the session's port and connected to the homeserver."""
    bridge = Bridge(config)
    try:
        await bridge.open()
        await bridge.serve()
        bridge.connect()
        await asyncio.wait_for(bridge.connected.wait(), CONNECT_TIMEOUT)
        yield bridge
    finally:
        await bridge.close()


UserFactory = Callable[[str], Awaitable[AsyncClient]]


@pytest.fixture
async def make_user(homeserver: Homeserver) -> AsyncIterator[UserFactory]:
    """Registers a fresh user through the admin API and returns a logged-in nio client."""
    clients: list[AsyncClient] = []

    async def make(role: str) -> AsyncClient:
        username = f"{role}-{uuid.uuid4().hex[:8]}"
        account = await asyncio.to_thread(
            homeserver.synapse.register_user, username, random_secret()
        )
        client = AsyncClient(homeserver.synapse.url, account["user_id"])
        client.user_id = account["user_id"]
        client.access_token = account["access_token"]
        client.device_id = account["device_id"]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()
