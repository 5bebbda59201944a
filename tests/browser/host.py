"""One person's marketplace page: `make run`'s demo page in its one-party mode
(``?as=buyer|seller&view=...``), served from the origin webchat.allowed_origins names. Its
backend mints the party's sessions; a test that hands over sessions of its own answers the
page's ``POST /session/<role>`` itself."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from playwright.sync_api import BrowserContext, FrameLocator, Page, Route


class Host:
    def __init__(
        self,
        context: BrowserContext,
        demo_url: str,
        role: str,
        mint: Callable[[], dict[str, Any]] | None = None,
        **view: str,
    ) -> None:
        self.page: Page = context.new_page()
        if mint is not None:

            def answer(route: Route) -> None:
                route.fulfill(json=mint())

            self.page.route(f"{demo_url.rstrip('/')}/session/{role}", answer)
        self.page.goto(f"{demo_url}?{urlencode({'as': role, **view})}")
        self.chat: FrameLocator = self.page.frame_locator("iframe[name=chat]")

    def received(self, kind: str) -> list[dict[str, Any]]:
        """The messages the chat sent the page, of one type (without the prefix)."""
        messages = self.page.evaluate("window.received")
        return [m for m in messages if m.get("type") == f"market-chat:{kind}"]
