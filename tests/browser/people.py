"""The people of a browser test: their browser contexts and pages, and the Matrix calls the
other side makes."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

from PIL import Image
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Locator

from tests.browser.conftest import WAIT_MS, ChatStack
from tests.browser.host import Host
from tests.browser.matrix import MatrixUser

DESKTOP = {"width": 1280, "height": 1000}
PHONE = {"width": 390, "height": 844}


def new_context(
    browser: Browser, contexts: list[BrowserContext], **options: Any
) -> BrowserContext:
    context = browser.new_context(**{"viewport": DESKTOP, **options})
    context.set_default_timeout(WAIT_MS)
    contexts.append(context)
    return context


def party(
    chat_stack: ChatStack,
    browser: Browser,
    contexts: list[BrowserContext],
    role: str,
    mint: Callable[[], dict[str, Any]] | None = None,
    **view: str,
) -> Host:
    """One person's marketplace page with the chat, in a browser context of their own."""
    return Host(new_context(browser, contexts), chat_stack.demo_url, role, mint, **view)


def composer(chat: FrameLocator) -> Locator:
    return chat.get_by_role("textbox", name="Message")


def room_of(chat_stack: ChatStack, transaction_id: str) -> str:
    return chat_stack.api.call("GET", f"/transactions/{transaction_id}")["room_id"]


def seller_matrix(chat_stack: ChatStack) -> MatrixUser:
    return MatrixUser(
        chat_stack.stack["homeserver_url"], chat_stack.api.session("seller-1")["access_token"]
    )


def admin_matrix(chat_stack: ChatStack) -> MatrixUser:
    admin = chat_stack.stack["users"]["admin"]
    localpart = admin["user_id"][1:].split(":")[0]
    return MatrixUser.login(chat_stack.stack["homeserver_url"], localpart, admin["password"])


def png(width: int = 64, height: int = 48) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, "PNG")
    return buffer.getvalue()
