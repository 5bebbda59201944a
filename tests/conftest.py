"""Fixtures every layer shares: a fresh database on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.harness import SYNAPSE_READY, fresh_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(backend: str, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(backend, tmp_path) as url:
        yield url


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    for seconds in config.stash.get(SYNAPSE_READY, []):
        terminalreporter.write_line(f"Synapse answered {seconds:.2f}s after launch")
