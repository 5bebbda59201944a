"""End-to-end fixtures."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from tests.conftest import UserFactory
from tests.e2e.stack import Stack
from tests.harness import Homeserver, WebhookReceiver
from tests.make_run import make_run, project  # noqa: F401 (fixtures of `make run`'s tests)


@pytest.fixture
async def stack(
    homeserver: Homeserver, database_url: str, make_user: UserFactory, api_timings: dict
) -> AsyncIterator[Stack]:
    async with ClientSession() as session:
        yield Stack(
            homeserver.bridge_config(database_url),
            session,
            await make_user("buyer"),
            await make_user("seller"),
            api_timings,
        )


@pytest.fixture
async def hooks() -> AsyncIterator[WebhookReceiver]:
    """The marketplace's webhook endpoint."""
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()
