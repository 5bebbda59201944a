"""The web chat as buyers and sellers use it, in Chromium, against `make run`'s stack."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Browser, BrowserContext, expect

from tests.browser.conftest import ChatStack, screenshot
from tests.browser.host import Host
from tests.browser.people import PHONE, composer, new_context, party, png


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def test_the_demo_page_walks_a_deal_from_locked_to_open_both_ways(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    page = new_context(browser, contexts).new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(chat_stack.demo_url)
    buyer = page.frame_locator('iframe[title="Buyer\'s chat"]')
    seller = page.frame_locator('iframe[title="Seller\'s chat"]')
    for side in (buyer, seller):
        expect(composer(side)).to_be_disabled()
        expect(
            side.get_by_text("The chat opens when the marketplace confirms payment.")
        ).to_be_visible()
        expect(side.locator(".mc-state")).to_have_text("Waiting for payment")
    expect(buyer.get_by_text("with Bob (seller)")).to_be_visible()
    # The chat lists, mounted by embed.js, show the order too.
    buyer_list = page.frame_locator('iframe[title="Buyer\'s chats"]')
    expect(
        buyer_list.get_by_role("button", name="Open the chat about Vintage bike (demo)")
    ).to_be_visible()
    screenshot(page, "demo-locked")
    buyer_frame = page.locator('iframe[title="Buyer\'s chat"]').element_handle().content_frame()
    buyer_frame.evaluate("window.sameDocument = true")

    page.get_by_role("button", name="Confirm payment").click()

    for side in (buyer, seller):  # live: no reload
        expect(composer(side)).to_be_enabled()
        expect(side.locator(".mc-state")).to_have_text("Open")
    assert buyer_frame.evaluate("window.sameDocument") is True
    composer(buyer).fill("Hello Bob, is the bike still in good shape?")
    expect(seller.get_by_text("Alice (buyer) is typing…")).to_be_visible()
    composer(buyer).press("Enter")
    expect(seller.get_by_text("Hello Bob, is the bike still in good shape?")).to_be_visible()
    expect(seller.get_by_text("Alice (buyer) is typing…")).to_be_hidden()
    expect(buyer.get_by_text("Seen")).to_be_visible()  # the seller's frame read it
    composer(seller).fill("It is, freshly serviced.")
    expect(buyer.get_by_text("Bob (seller) is typing…")).to_be_visible()
    seller.get_by_role("button", name="Send").click()
    expect(buyer.get_by_text("It is, freshly serviced.")).to_be_visible()
    expect(seller.get_by_text("Seen")).to_be_visible()
    screenshot(page, "demo-desktop")
    # No request to any host but the page's own, the bridge and the homeserver (no CDN, no fonts).
    hosts = {
        chat_stack.host_origin,
        origin(chat_stack.chat_url),
        chat_stack.stack["homeserver_url"],
    }
    assert {origin(url) for url in requested if not url.startswith(("data:", "blob:"))} <= hosts
    # The same conversation on a phone: the buyer's page alone, 390 px wide.
    phone = new_context(browser, contexts, viewport=PHONE, is_mobile=True, has_touch=True)
    demo = chat_stack.stack["demo_transaction_id"]
    on_phone = Host(phone, chat_stack.demo_url, "buyer", view="transaction", transaction_id=demo)
    expect(on_phone.chat.get_by_text("It is, freshly serviced.")).to_be_visible()
    expect(composer(on_phone.chat)).to_be_enabled()
    screenshot(on_phone.page, "demo-phone")


def test_an_image_is_shown_and_files_the_rules_refuse_never_leave_the_browser(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    deal = chat_stack.api.deal()
    buyer = party(chat_stack, browser, contexts, "buyer", view="transaction", transaction_id=deal)
    seller = party(
        chat_stack, browser, contexts, "seller", view="transaction", transaction_id=deal
    )
    expect(composer(buyer.chat)).to_be_enabled()
    attach = buyer.chat.locator("input[type=file]")
    expect(buyer.chat.get_by_role("button", name="Attach a file")).to_be_enabled()

    attach.set_input_files({"name": "bike.png", "mimeType": "image/png", "buffer": png()})
    image = seller.chat.get_by_role("img", name="Image: bike.png")
    expect(image).to_be_visible()
    expect(image).to_have_js_property("naturalWidth", 64)  # the bytes arrived and decoded

    attach.set_input_files(
        {"name": "setup.exe", "mimeType": "application/x-msdownload", "buffer": b"MZ" + bytes(64)}
    )
    expect(buyer.chat.get_by_role("alert")).to_have_text(
        "Files of this type (application/x-msdownload) are not allowed here."
    )
    attach.set_input_files(
        {
            "name": "huge.pdf",
            "mimeType": "application/pdf",
            "buffer": b"%PDF-1.4\n" + bytes(11 << 20),
        }
    )
    expect(buyer.chat.get_by_role("alert")).to_have_text(
        "huge.pdf is too large: files up to 10 MB are allowed."
    )
    # Allowed by its declared type, refused by the homeserver's judge: the bytes are no PDF.
    attach.set_input_files(
        {"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": b"MZ" + bytes(512)}
    )
    expect(buyer.chat.get_by_role("alert")).to_contain_text("invoice.pdf was refused: ")
    # Nothing of the refused files reached the seller.
    for name in ("setup.exe", "huge.pdf", "invoice.pdf"):
        expect(seller.chat.get_by_text(name)).to_have_count(0)
