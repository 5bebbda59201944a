"""Fixtures every layer shares: fresh databases on each backend, the session's Synapse, users."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from nio import AsyncClient

from tests.harness import (
    API_TIMINGS,
    CHAOS_FIGURES,
    MAKE_RUN_READY,
    SYNAPSE_READY,
    WEBHOOK_LATENCY,
    Homeserver,
    fresh_database,
    random_secret,
    start_homeserver,
    unique_id,
)

BACKENDS = ["sqlite", "postgres"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("chaos", "fault injection (tests/chaos)")
    group.addoption(
        "--chaos-long",
        action="store_true",
        help="the long chaos run (make chaos): 50 kill cycles, minutes-long outages",
    )
    group.addoption("--chaos-cycles", type=int, help="fault cycles per scenario (default 10)")
    group.addoption("--chaos-messages", type=int, help="messages sent per cycle (default 4)")
    group.addoption(
        "--chaos-outage", type=float, help="seconds each receiver fault lasts (default 2)"
    )
    group.addoption("--chaos-seed", type=int, help="the random seed (default: a new one)")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(backend, tmp_path) as url:
        yield url


@pytest.fixture(scope="session")
def homeserver(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Homeserver:
    server = start_homeserver(tmp_path_factory.mktemp("homeserver"))
    pytestconfig.stash.setdefault(SYNAPSE_READY, []).append(server.synapse.ready_seconds)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def hardened_homeserver(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Homeserver:
    """A second Synapse with the marketplace's module and hardened settings (make run's)."""
    server = start_homeserver(tmp_path_factory.mktemp("hardened"), hardened=True)
    pytestconfig.stash.setdefault(SYNAPSE_READY, []).append(server.synapse.ready_seconds)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def own_homeserver(tmp_path: Path, pytestconfig: pytest.Config) -> Homeserver:
    """A Synapse for one test that stops or restarts it (every other test shares the
    session's)."""
    server = start_homeserver(tmp_path / "own")
    pytestconfig.stash.setdefault(SYNAPSE_READY, []).append(server.synapse.ready_seconds)
    try:
        yield server
    finally:
        server.stop()


UserFactory = Callable[[str], Awaitable[AsyncClient]]


@asynccontextmanager
async def user_factory(homeserver: Homeserver) -> AsyncIterator[UserFactory]:
    """Registers users through the admin API; each a logged-in nio client, closed after."""
    clients: list[AsyncClient] = []

    async def make(username: str) -> AsyncClient:
        account = await asyncio.to_thread(
            homeserver.synapse.register_user, username, random_secret()
        )
        client = AsyncClient(homeserver.client_url, account["user_id"])
        client.user_id = account["user_id"]
        client.access_token = account["access_token"]
        client.device_id = account["device_id"]
        clients.append(client)
        return client

    try:
        yield make
    finally:
        for client in clients:
            await client.close()


@pytest.fixture
async def make_user(homeserver: Homeserver) -> AsyncIterator[UserFactory]:
    """A fresh user on the session's Synapse, named after its role."""
    async with user_factory(homeserver) as make:
        yield lambda role: make(unique_id(role))


@pytest.fixture
def api_timings(pytestconfig: pytest.Config) -> dict[str, list[float]]:
    return pytestconfig.stash.setdefault(API_TIMINGS, {})


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for seconds in config.stash.get(SYNAPSE_READY, []):
        terminalreporter.write_line(f"Synapse answered {seconds:.2f}s after launch")
    for run, ready, stopped in config.stash.get(MAKE_RUN_READY, []):
        terminalreporter.write_line(
            f"make run ({run}): stack.json after {ready:.1f}s, "
            f"stopped {stopped:.1f}s after SIGTERM"
        )
    latencies = config.stash.get(WEBHOOK_LATENCY, [])
    if latencies:
        terminalreporter.write_line(
            f"message -> webhook: p50 {statistics.median(latencies) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} messages"
        )
    for line in config.stash.get(CHAOS_FIGURES, []):
        terminalreporter.write_line(line)
    for operation, seconds in sorted(config.stash.get(API_TIMINGS, {}).items()):
        terminalreporter.write_line(
            f"{operation}: p50 {statistics.median(seconds) * 1000:.0f} ms, "
            f"max {max(seconds) * 1000:.0f} ms over {len(seconds)} calls"
        )
