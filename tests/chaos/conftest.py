"""Chaos fixtures: the run's settings (seeded, printed), a receiver, a stack on PostgreSQL."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import pytest
from aiohttp import ClientSession

from tests.chaos.common import Settings, chaos_config
from tests.conftest import UserFactory
from tests.e2e.stack import Stack
from tests.harness import Homeserver, WebhookReceiver, fresh_postgres_database


@pytest.fixture
def settings(pytestconfig: pytest.Config) -> Settings:
    chosen = Settings.of(pytestconfig)
    print(f"chaos settings: {chosen} (repeat with --chaos-seed={chosen.seed})")
    return chosen


@pytest.fixture
def rng(settings: Settings) -> random.Random:
    return random.Random(settings.seed)


@pytest.fixture
async def hooks() -> AsyncIterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def stack(
    homeserver: Homeserver,
    postgres_url: str,
    make_user: UserFactory,
    hooks: WebhookReceiver,
    api_timings: dict,
) -> AsyncIterator[Stack]:
    """The session's Synapse, a bridge config on a fresh PostgreSQL, webhooks to ``hooks``."""
    async with ClientSession() as session:
        config = chaos_config(homeserver, postgres_url, hooks)
        yield Stack(config, session, await make_user("buyer"), await make_user("seller"), {})
