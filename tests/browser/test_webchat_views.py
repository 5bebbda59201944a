"""The dispute view, the chat list, history and edits, French and the keyboard."""

from __future__ import annotations

from playwright.sync_api import Browser, BrowserContext, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.browser.conftest import ChatStack, screenshot
from tests.browser.people import admin_matrix, composer, party, room_of, seller_matrix
from tests.harness import random_word, unique_id


def test_the_dispute_view_shows_its_reason_and_state_and_marks_the_admins(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    dispute = open_dispute(chat_stack, "The lens is scratched", "Camera")
    dispute_id, deal = dispute["dispute_id"], dispute["transaction_id"]
    admin = admin_matrix(chat_stack)
    admin.join(dispute["room_id"])
    admin.say(dispute["room_id"], "I am looking into it: please send a photo of the lens.")

    buyer = party(chat_stack, browser, contexts, "buyer", view="dispute", dispute_id=dispute_id)
    chat = buyer.chat
    expect(chat.get_by_role("heading", name="Dispute: Camera")).to_be_visible()
    expect(chat.locator(".mc-state")).to_have_text("Dispute open")
    expect(chat.locator(".mc-dispute-reason")).to_have_text("Reason: The lens is scratched")
    message = chat.locator(".mc-msg", has_text="please send a photo of the lens")
    expect(message.locator(".mc-badge")).to_have_text("Moderator")
    expect(composer(chat)).to_be_enabled()  # parties talk with the admins in a dispute
    composer(chat).fill("Here it is, the scratch is on the left.")
    composer(chat).press("Enter")
    expect(chat.locator(".mc-mine", has_text="the scratch is on the left")).to_be_visible()
    screenshot(buyer.page, "dispute")

    # The transaction's own room is frozen meanwhile, and says why.
    own = party(chat_stack, browser, contexts, "buyer", view="transaction", transaction_id=deal)
    expect(composer(own.chat)).to_be_disabled()
    expect(own.chat.locator(".mc-state")).to_have_text("Frozen during a dispute")
    expect(
        own.chat.get_by_text("A dispute is open: only the marketplace's moderators")
    ).to_be_visible()


def test_the_chat_list_badges_unread_messages_live_and_clears_them_once_read(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    title = f"Lamp {random_word()}"
    deal = chat_stack.api.deal(title=title)
    room_id = room_of(chat_stack, deal)
    buyer = party(chat_stack, browser, contexts, "buyer", view="list")
    row = buyer.chat.get_by_role("button", name=f"Open the chat about {title}")
    expect(row).to_be_visible()
    expect(row.locator(".mc-unread")).to_have_count(0)
    unread_before = buyer.received("unread")[-1]["count"]

    seller = seller_matrix(chat_stack)
    seller.say(room_id, "The lamp ships tomorrow.")
    seller.say(room_id, "I will send the tracking number here.")

    expect(row.locator(".mc-unread")).to_have_text("2")
    expect(row).to_contain_text("I will send the tracking number here.")
    expect(row).to_have_accessible_name(f"Open the chat about {title}, 2 unread messages")
    assert buyer.received("unread")[-1]["count"] == unread_before + 2
    screenshot(buyer.page, "chat-list")

    row.click()
    expect(buyer.chat.get_by_text("The lamp ships tomorrow.")).to_be_visible()
    assert buyer.received("room-opened")[-1]["room_id"] == room_id
    buyer.chat.get_by_role("button", name="Back to your chats").click()
    expect(row.locator(".mc-unread")).to_have_count(0)
    assert buyer.received("unread")[-1]["count"] == unread_before


def open_dispute(chat_stack: ChatStack, reason: str, title: str) -> dict:
    deal = chat_stack.api.deal(title=title)
    body = {
        "dispute_id": unique_id("d"),
        "transaction_id": deal,
        "reason": reason,
        "opened_by": "buyer",
    }
    return chat_stack.api.call("POST", "/disputes", body)


def test_older_history_edits_and_removals(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    # A dispute room: an admin may post 45 lines in a row (parties would trip the flood rule).
    dispute = open_dispute(chat_stack, "Missing shelf", "Bookshelf")
    room_id = dispute["room_id"]
    admin = admin_matrix(chat_stack)
    admin.join(room_id)
    for number in range(45):
        admin.say(room_id, f"history line {number}")
    seller = seller_matrix(chat_stack)
    price = seller.say(room_id, "The refund would be 120 euros")
    seller.send(
        room_id,
        {
            "msgtype": "m.text",
            "body": "* The refund would be 95 euros",
            "m.new_content": {"msgtype": "m.text", "body": "The refund would be 95 euros"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": price},
        },
    )
    oops = seller.say(room_id, "a message the admin removes")
    admin.redact(room_id, oops)

    buyer = party(
        chat_stack, browser, contexts, "buyer", view="dispute", dispute_id=dispute["dispute_id"]
    )
    chat = buyer.chat
    edited = chat.locator(".mc-msg", has_text="The refund would be 95 euros")
    expect(edited).to_contain_text("(edited)")
    expect(chat.get_by_text("The refund would be 120 euros")).to_have_count(0)
    expect(chat.get_by_text("Message removed")).to_be_visible()
    expect(chat.get_by_text("a message the admin removes")).to_have_count(0)
    expect(chat.get_by_text("history line 44", exact=True)).to_be_attached()
    expect(chat.get_by_text("history line 0", exact=True)).to_have_count(0)  # not loaded yet

    # Scrolling up loads older pages, until the room's start.
    start = chat.get_by_role("button", name="Start of the conversation")
    for _ in range(10):
        chat.locator(".mc-timeline").evaluate("timeline => { timeline.scrollTop = 0; }")
        try:
            start.wait_for(timeout=2000)
            break
        except PlaywrightTimeout:
            continue
    expect(chat.get_by_text("history line 0", exact=True)).to_be_attached()
    expect(start).to_be_disabled()


def test_french_and_the_keyboard_alone(
    chat_stack: ChatStack, browser: Browser, contexts: list[BrowserContext]
) -> None:
    deal = chat_stack.api.deal(title="Vélo")
    buyer = party(
        chat_stack, browser, contexts, "buyer", view="transaction", transaction_id=deal, lang="fr"
    )
    chat = buyer.chat
    message = chat.get_by_role("textbox", name="Message")
    expect(message).to_be_enabled()
    expect(chat.get_by_role("button", name="Envoyer")).to_be_visible()
    expect(chat.get_by_role("button", name="Joindre un fichier")).to_be_visible()
    expect(chat.locator(".mc-state")).to_have_text("Ouverte")
    expect(chat.get_by_text("n'est pas chiffrée de bout en bout")).to_be_visible()

    # The composer has the focus when the chat opens; Tab reaches Send; Enter sends.
    expect(message).to_be_focused()
    buyer.page.keyboard.type("Bonjour, toujours disponible ?")
    buyer.page.keyboard.press("Tab")
    expect(chat.get_by_role("button", name="Envoyer")).to_be_focused()
    buyer.page.keyboard.press("Shift+Tab")
    buyer.page.keyboard.press("Enter")
    expect(chat.locator(".mc-mine", has_text="Bonjour, toujours disponible ?")).to_be_visible()
    expect(message).to_have_value("")
