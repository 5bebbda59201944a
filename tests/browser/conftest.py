"""The web chat in a real browser: Debian's Chromium driven by Playwright, against the stack
`make run` starts (its demo page, its bridge, its homeserver), each party in its own browser
context. `make test` installs Chromium (scripts/install-browser.sh); nothing here is skipped.

Screenshots are kept in test-artifacts/webchat/ (docs/webchat.md shows a pair of them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.browser.matrix import http_json
from tests.harness import unique_id
from tests.make_run import ROOT, SKIP, MakeRun

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As the machine's notes advise: no sandbox as root, and no background calls to Google's hosts
# (this machine's closed network refuses them, many at a time).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "webchat"
WAIT_MS = 20_000  # the longest any expectation waits: a sync round trip takes well under 1 s
expect.set_options(timeout=WAIT_MS)


class Api:
    """The marketplace's backend: the bridge's API with the stack's token (no browser)."""

    def __init__(self, stack: dict[str, Any]) -> None:
        self.url = stack["api_url"]
        self.token = stack["api_token"]

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return http_json(self.url + path, self.token, method, body)

    def session(self, user_id: str, ttl_seconds: int = 3600) -> dict[str, Any]:
        return self.call("POST", f"/users/{user_id}/sessions", {"ttl_seconds": ttl_seconds})

    def deal(self, paid: bool = True, title: str = "Road bike") -> str:
        """A new transaction between the demo buyer and seller; its id."""
        transaction_id = unique_id("t")
        self.call(
            "POST",
            "/transactions",
            {
                "transaction_id": transaction_id,
                "title": title,
                "buyer": {"user_id": "buyer-1"},
                "seller": {"user_id": "seller-1"},
            },
        )
        if paid:
            self.call("POST", f"/transactions/{transaction_id}/payment")
        return transaction_id


@dataclass
class ChatStack:
    run: MakeRun
    stack: dict[str, Any]
    api: Api

    @property
    def demo_url(self) -> str:
        return self.stack["chat_demo_url"]

    @property
    def host_origin(self) -> str:
        """The demo page's origin: the one webchat.allowed_origins lets frame the chat."""
        return self.demo_url.rstrip("/")

    @property
    def chat_url(self) -> str:
        return self.stack["chat_url"]


@pytest.fixture(scope="package")
def chat_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatStack]:
    """`make run` in a copy of the project, for this package's tests."""
    project = tmp_path_factory.mktemp("webchat") / "project"
    shutil.copytree(ROOT, project, ignore=SKIP)
    run = MakeRun(project)
    run.start()
    try:
        stack = run.stack()
        yield ChatStack(run, stack, Api(stack))
    finally:
        run.terminate()


# Package scope, not session: sync Playwright keeps an event loop running in this thread
# while it is open, and the asyncio tests of the packages after this one need it closed.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def contexts(browser: Browser) -> Iterator[list[BrowserContext]]:
    """Browser contexts a test opens (one per person): closed after it."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        context.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
