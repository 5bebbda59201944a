"""Sessions that end, sessions that were never good, rooms that are not the user's, hostile
message HTML, a network that drops, and pages that may not frame the chat."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import ChatStack
from tests.browser.people import composer, new_context, party, room_of, seller_matrix
from tests.harness import unique_id


def test_a_revoked_session_is_replaced_through_the_host_and_nothing_is_missed(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    deal = chat_stack.api.deal(title="Desk")
    minted: list[dict[str, Any]] = []

    def mint() -> dict[str, Any]:
        minted.append(chat_stack.api.session("buyer-1"))
        return minted[-1]

    buyer = party(
        chat_stack, browser, contexts, "buyer", mint, view="transaction", transaction_id=deal
    )
    expect(composer(buyer.chat)).to_be_enabled()
    assert len(minted) == 1 and len(buyer.received("ready")) == 1

    chat_stack.api.call("DELETE", f"/users/buyer-1/sessions/{minted[0]['device_id']}")
    seller_matrix(chat_stack).say(room_of(chat_stack, deal), "Sent while your session ended")

    expect(buyer.chat.get_by_text("Sent while your session ended")).to_be_visible()
    expect(composer(buyer.chat)).to_be_enabled()
    assert len(buyer.received("need-session")) == 1
    assert len(minted) == 2
    composer(buyer.chat).fill("Still here")
    composer(buyer.chat).press("Enter")
    expect(buyer.chat.locator(".mc-mine", has_text="Still here")).to_be_visible()


def test_a_tampered_session_gets_a_clear_message_and_the_host_is_not_asked_forever(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    deal = chat_stack.api.deal(title="Chair")
    handed: list[dict[str, Any]] = []

    def tampered() -> dict[str, Any]:
        session = chat_stack.api.session("buyer-1")
        handed.append({**session, "access_token": session["access_token"][:-4] + "AAAA"})
        return handed[-1]

    buyer = party(
        chat_stack, browser, contexts, "buyer", tampered, view="transaction", transaction_id=deal
    )
    expect(buyer.chat.get_by_text("This chat session is not valid.")).to_be_visible()
    expect(buyer.chat.get_by_role("textbox", name="Message")).to_have_count(0)
    assert len(handed) == 2  # the first, and one more after it was refused


def test_a_room_that_is_not_the_users_or_does_not_exist_says_so(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    api = chat_stack.api
    for user in ("buyer-9", "seller-9"):
        api.call("PUT", f"/users/{user}", {"display_name": user})
    others = unique_id("t")
    api.call(
        "POST",
        "/transactions",
        {
            "transaction_id": others,
            "title": "Someone else's deal",
            "buyer": {"user_id": "buyer-9"},
            "seller": {"user_id": "seller-9"},
        },
    )
    for view in (
        {"view": "transaction", "transaction_id": others},
        {"view": "transaction", "transaction_id": "no-such-order"},
        {"view": "dispute", "dispute_id": "no-such-dispute"},
    ):
        page = party(chat_stack, browser, contexts, "buyer", **view)
        expect(
            page.chat.get_by_text("This conversation does not exist or is not yours.")
        ).to_be_visible()
        expect(page.chat.get_by_text("Someone else's deal")).to_have_count(0)


def test_message_html_is_reduced_to_the_matrix_subset(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    deal = chat_stack.api.deal(title="Mirror")
    hostile = (
        "<b>bold</b> <i>and</i> "
        '<img src="x" onerror="top.pwned = 1">'
        "<script>top.pwned = 2</script>"
        '<a href="javascript:top.pwned = 3">a link</a> '
        '<span style="position:fixed;inset:0" onmouseover="top.pwned = 4">cover</span>'
        '<iframe src="about:blank"></iframe>'
    )
    seller_matrix(chat_stack).send(
        room_of(chat_stack, deal),
        {
            "msgtype": "m.text",
            "body": "bold and a link cover",
            "format": "org.matrix.custom.html",
            "formatted_body": hostile,
        },
    )
    buyer = party(chat_stack, browser, contexts, "buyer", view="transaction", transaction_id=deal)
    html = buyer.chat.locator(".mc-theirs .mc-html")
    expect(html.locator("b")).to_have_text("bold")
    expect(html.locator("i")).to_have_text("and")
    for tag in ("img", "script", "iframe", "[style]", "[onmouseover]", "a[href]"):
        expect(html.locator(tag)).to_have_count(0)
    expect(html.locator("a")).to_have_text("a link")
    html.locator("a").click()
    html.get_by_text("cover").hover()
    assert buyer.page.evaluate("window.pwned") is None


def test_the_chat_reconnects_after_the_network_drops(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    deal = chat_stack.api.deal(title="Kettle")
    buyer = party(chat_stack, browser, contexts, "buyer", view="transaction", transaction_id=deal)
    expect(composer(buyer.chat)).to_be_enabled()

    buyer.page.context.set_offline(True)
    expect(buyer.chat.get_by_role("status")).to_have_text("Connection lost. Reconnecting…")
    expect(composer(buyer.chat)).to_be_disabled()
    seller_matrix(chat_stack).say(room_of(chat_stack, deal), "Sent while you were offline")
    buyer.page.context.set_offline(False)

    expect(buyer.chat.get_by_text("Sent while you were offline")).to_be_visible()
    expect(buyer.chat.get_by_role("status")).to_be_hidden()
    expect(composer(buyer.chat)).to_be_enabled()


def test_only_the_allowed_origins_may_frame_the_chat_or_hand_it_a_session(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    """Another origin (localhost is not 127.0.0.1): its frame of the chat is refused."""
    page = new_context(browser, contexts).new_page()
    other = chat_stack.demo_url.replace("127.0.0.1", "localhost")
    page.goto(f"{other}?as=buyer&view=list")
    frame = page.locator("iframe[name=chat]").element_handle().content_frame()
    expect(page.locator("iframe[name=chat]")).to_be_attached()
    # frame-ancestors: Chromium shows its own error page in place of the chat.
    page.wait_for_load_state("load")
    assert frame is not None
    assert frame.evaluate("location.href").startswith("chrome-error://")


def test_the_chat_routes_answer_bad_input_with_errcodes(chat_stack: ChatStack) -> None:
    chat_url = chat_stack.chat_url
    page = urllib.request.urlopen(chat_url, timeout=10)  # noqa: S310
    policy = page.headers["Content-Security-Policy"]
    assert f"frame-ancestors 'self' {chat_stack.host_origin}" in policy
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert f"connect-src 'self' {chat_stack.stack['homeserver_url']}" in policy

    def status(url: str, token: str | None = None) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(url, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    chats = chat_url + "api/v1/chats"
    assert status(chats) == (
        401,
        {"errcode": "MARKET_MISSING_TOKEN", "error": "Missing Bearer token"},
    )
    assert status(chats, "not-a-token")[1]["errcode"] == "MARKET_UNKNOWN_TOKEN"
    assert status(chats, "x" * 5000)[1]["errcode"] == "MARKET_UNKNOWN_TOKEN"
    admin = chat_stack.stack["users"]["admin"]
    assert admin  # an account that is no marketplace user's: the admin logs in elsewhere
    code, body = status(chat_url + "index.html")
    assert (code, body["errcode"]) == (404, "MARKET_NOT_FOUND")
    code, body = status(chat_url + "..%2Fmanifest.json")
    assert (code, body["errcode"]) == (404, "MARKET_NOT_FOUND")
    code, body = status(chats, chat_stack.api.session("buyer-1")["access_token"])
    assert code == 200 and body["user_id"] == "buyer-1"
    assert {chat["buyer"] for chat in body["chats"]} == {body["matrix_id"]}


def test_each_sides_chat_list_names_the_other_party(chat_stack: ChatStack) -> None:
    chat_stack.api.deal()

    def chats_of(user_id: str) -> dict[str, Any]:
        token = chat_stack.api.session(user_id)["access_token"]
        request = urllib.request.Request(  # noqa: S310
            chat_stack.chat_url + "api/v1/chats", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return json.loads(answer.read())

    buyer, seller = chats_of("buyer-1"), chats_of("seller-1")
    assert buyer["chats"] and seller["chats"]
    assert {(chat["buyer"], chat["seller"]) for chat in buyer["chats"]} == {
        (buyer["matrix_id"], seller["matrix_id"])
    }
    assert {(chat["buyer"], chat["seller"]) for chat in seller["chats"]} == {
        (buyer["matrix_id"], seller["matrix_id"])
    }
