"""Shared test tools: polling with a deadline, free ports, test configs, fresh databases."""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from yarl import URL

from bridge.config import Config, build_config

T = TypeVar("T")

# How long each Synapse took to answer after launch, printed at the end of the run.
SYNAPSE_READY = pytest.StashKey[list[float]]()

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


async def eventually(
    check: Callable[[], Awaitable[T]], *, within: float = 15.0, interval: float = 0.05
) -> T:
    """Call ``check`` until it returns a truthy value without raising AssertionError.

    Returns that value; after ``within`` seconds re-raises the last AssertionError (or fails
    naming the last falsy value), so a failure says what was never reached.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            result = await check()
        except AssertionError:
            if time.monotonic() >= deadline:
                raise
        else:
            if result:
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def random_secret() -> str:
    return secrets.token_urlsafe(40)


def make_config(
    *,
    database_url: str,
    homeserver_url: str = "http://127.0.0.1:8008",
    bridge_port: int = 29330,
    as_token: str | None = None,
    hs_token: str | None = None,
    api_token: str | None = None,
    **sections: dict[str, Any],
) -> Config:
    data: dict[str, Any] = {
        "homeserver": {"url": homeserver_url, "domain": "localhost"},
        "appservice": {
            "id": "marketplace",
            "url": f"http://127.0.0.1:{bridge_port}",
            "as_token": as_token or random_secret(),
            "hs_token": hs_token or random_secret(),
            "bot_localpart": "marketbot",
            "alias_prefix": "market_",
            "max_transaction_bytes": 32 * 1024 * 1024,
        },
        "api": {
            "token": api_token or random_secret(),
            "max_body_bytes": 65536,
            "allowed_matrix_servers": [],
        },
        "rooms": {"version": "12", "admins": []},
        "server": {"host": "127.0.0.1", "port": bridge_port},
        "database": {"url": database_url, "max_connections": 5},
        "logging": {"level": "DEBUG"},
    }
    for name, values in sections.items():
        data[name] = {**data[name], **values}
    return build_config(data)


def postgres_server_url() -> str:
    return os.environ.get("BRIDGE_TEST_DATABASE_URL", DEFAULT_POSTGRES_URL)


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """A new, empty database on the test server, dropped afterwards; yields its URL."""
    server = URL(postgres_server_url())
    try:
        admin = await asyncpg.connect(str(server), timeout=10)
    except (OSError, asyncpg.PostgresError) as e:
        raise RuntimeError(
            f"PostgreSQL is needed for these tests and did not answer at {server.host}:"
            f"{server.port} ({e}). Start it, or point BRIDGE_TEST_DATABASE_URL at one."
        ) from e
    name = f"bridge_test_{uuid.uuid4().hex[:12]}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield str(server.with_path(f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@asynccontextmanager
async def fresh_database(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite://{tmp_path / 'bridge.db'}"
    else:
        async with fresh_postgres_database() as url:
            yield url
