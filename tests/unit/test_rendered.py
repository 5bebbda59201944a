"""Content rules judge every text a client may render, and an unreadable event is a violation."""

from __future__ import annotations

import pytest

import policy.rules
from policy.messages import html_text, malformed_reason, rendered_texts, strip_reply_fallback
from policy.rules import Action, ContentRules, Rule, RuleSetting, judge_event
from policy.states import Access

POSTING = frozenset({Access.LOCKED, Access.OPEN, Access.FROZEN})
PHONE = "+44 7911 123456"


def rules() -> ContentRules:
    every = {Action.REDACT, Action.WARN}
    return ContentRules(
        allowed_msgtypes=frozenset({"m.text", "m.notice", "m.image", "m.file", "m.location"}),
        allowed_media_types=("image/jpeg", "application/pdf"),
        max_media_bytes=10 * 1024 * 1024,
        allowed_link_hosts=("marketplace.example",),
        off_platform_terms=("whatsapp",),
        flood_messages=5,
        flood_window_ms=10_000,
        settings={rule: RuleSetting(frozenset(every), POSTING) for rule in Rule},
    )


def broken(content: object, event_type: str = "m.room.message") -> list[Rule]:
    verdict = judge_event(
        event_type,
        content,
        rules(),
        Access.OPEN,
        transaction_closed=False,
        recent_messages=1,
        muted=False,
    )
    return [v.rule for v in verdict.violations]


def text(body: str, **more: object) -> dict:
    return {"msgtype": "m.text", "body": body, **more}


@pytest.mark.parametrize(
    "content",
    [
        # Only in the HTML body: its text, a link's target or title, an image's alternative.
        text("call me", format="org.matrix.custom.html", formatted_body=f"call me <b>{PHONE}</b>"),
        text("see", formatted_body='<a href="https://evil.example.com">see</a>'),
        text("see", formatted_body=f'<a href="#" title="{PHONE}">see</a>'),
        text("img", formatted_body=f'<img src="mxc://hs/a" alt="{PHONE}">'),
        # A pill whose target is another server's account.
        text("Bob", formatted_body='<a href="https://matrix.to/#/@bob:evil.org">Bob</a>'),
        # New content with no edit relation: clients render it.
        text("hello", **{"m.new_content": text(f"call {PHONE}")}),
        # Quote lines next to a relation that is no reply (a thread).
        text(
            f"> {PHONE}\n\nhello", **{"m.relates_to": {"rel_type": "m.thread", "event_id": "$t"}}
        ),
        # A reply whose quote is not the fallback's shape (no blank line after it).
        text(f"> {PHONE}\nhello", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}}),
        # File names and captions.
        {
            "msgtype": "m.file",
            "body": "doc",
            "filename": f"call {PHONE}.pdf",
            "info": {"mimetype": "application/pdf"},
        },
        # A location's description; unknown fields a client might show.
        {
            "msgtype": "m.location",
            "body": "here",
            "geo_uri": "geo:51.5,-0.1",
            "org.matrix.msc3488.location": {"description": f"ring {PHONE}"},
        },
        text("hi", **{"com.example.subtitle": f"whatsapp {PHONE}"}),
    ],
)
def test_a_contact_detail_anywhere_a_client_renders_is_found(content: dict) -> None:
    assert Rule.CONTACT_DETAILS in broken(content)


def test_a_poll_is_judged_for_its_question_and_answers() -> None:
    poll = {
        "org.matrix.msc3381.poll.start": {
            "question": {"org.matrix.msc1767.text": "Which?"},
            "answers": [{"id": "a", "org.matrix.msc1767.text": f"text me {PHONE}"}],
        }
    }
    assert broken(poll, "org.matrix.msc3381.poll.start") == [
        Rule.MSGTYPE,
        Rule.CONTACT_DETAILS,
    ]


def test_a_forbidden_file_in_new_content_without_an_edit_relation_is_found() -> None:
    sneaky = text(
        "photo",
        **{
            "m.new_content": {
                "msgtype": "m.file",
                "body": "x.exe",
                "info": {"mimetype": "application/x-msdownload"},
            }
        },
    )
    assert Rule.MEDIA_TYPE in broken(sneaky)


def test_a_real_replys_fallback_quote_is_not_judged_as_the_repliers_text() -> None:
    quote = "> <@bot:hs> A dispute is open: https://matrix.to/#/!room:hs\n\nThanks"
    reply = text(
        quote,
        format="org.matrix.custom.html",
        formatted_body="<mx-reply>https://other.example.com</mx-reply>Thanks",
        **{"m.relates_to": {"m.in_reply_to": {"event_id": "$notice"}}},
    )
    assert broken(reply) == []
    assert strip_reply_fallback(quote) == "Thanks"


def test_ordinary_rich_text_passes() -> None:
    content = text(
        "See the photos",
        format="org.matrix.custom.html",
        formatted_body='See <a href="https://marketplace.example/item/42">the photos</a>',
    )
    assert broken(content) == []
    assert "See \nthe photos" not in html_text(content["formatted_body"])  # text, not markup
    assert "marketplace.example/item/42" in html_text(content["formatted_body"])


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ([1, 2], "its content is not an object"),
        ({"msgtype": "m.text"}, "its body is not a text"),
        ({"msgtype": "m.text", "body": 7}, "its body is not a text"),
        ({"msgtype": 1, "body": "x"}, "its msgtype is not a text"),
        (text("x", formatted_body=["<b>"]), "its formatted_body is not a text"),
        (text("x", **{"m.new_content": "x"}), "its new content is not an object"),
        (text("x", **{"m.new_content": text(["x"])}), "its body is not a text"),
        (text("x", **{"m.relates_to": "$e"}), "its m.relates_to is not an object"),
    ],
)
def test_an_unreadable_message_is_malformed(content: object, reason: str) -> None:
    assert malformed_reason("m.room.message", content) == reason
    assert Rule.MALFORMED_CONTENT in broken(content)


def test_content_nested_too_deeply_is_malformed() -> None:
    deep: dict = text("x")
    for _ in range(100):
        deep = {"x": deep}
    assert malformed_reason("m.room.message", text("x", nest=deep)) is not None
    assert Rule.MALFORMED_CONTENT in broken(text("x", nest=deep))


def test_a_judge_that_fails_on_a_field_breaks_the_malformed_rule_instead_of_passing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def choke(*_: object) -> list:
        raise ValueError("a field nobody expected")

    monkeypatch.setattr(policy.rules, "find_contact_details", choke)
    assert broken(text("hello")) == [Rule.MALFORMED_CONTENT]


def test_technical_fields_are_not_judged_as_text() -> None:
    content = {
        "msgtype": "m.image",
        "body": "bike.jpg",
        "url": "mxc://hs/12345678901234",
        "info": {"mimetype": "image/jpeg", "size": 1234567, "xyz.amorgan.blurhash": "L12345678"},
        "m.mentions": {"user_ids": ["@bob:evil.org"]},
    }
    assert rendered_texts(content) == ["bike.jpg"]
    assert broken(content) == []


def test_identifiers_are_not_read_as_phone_numbers() -> None:
    """Random ids hold digit runs: about one event id in sixty would otherwise read as a phone
    number, and a party's redaction or poll would be masked or refused at random."""
    ids = ["$F8HFrx-Q7yq2xStx7ciC8GRx3WE73loO41X7y1Y4d9o", "$0kYMEMU1jt8EaQH0R5Xj275zP8l2M8zZnlg6"]
    assert broken({"redacts": ids[0], "reason": "typo"}, "m.room.redaction") == []
    poll = {
        "org.matrix.msc3381.poll.start": {
            "question": {"body": "Which colour?"},
            "answers": [{"id": ids[1][1:], "org.matrix.msc1767.text": "Red"}],
        }
    }
    assert broken(poll, "org.matrix.msc3381.poll.start") == [Rule.MSGTYPE]  # only its type
    assert rendered_texts(poll) == ["Which colour?", "Red"]


@pytest.mark.parametrize(
    "content",
    [
        text("hi", url="https://wa.me/447911123456"),  # out of an mxc URI's grammar
        {**text("hi"), "info": {"mimetype": f"image/png; wa={PHONE}"}},
        {**text("hi"), "info": {"thumbnail_url": "mailto:bob.seller@gmail.com"}},
        {**text("hi"), "file": {"note": f"whatsapp {PHONE}"}},
        {**text("hi"), "m.mentions": {"user_ids": [f"call {PHONE}"]}},
        {**text("hi"), f"whatsapp {PHONE}": True},  # a key the sender made up
        {**text("hi"), "nested": {"deeper": {f"{PHONE}": 1}}},
        {**text("hi"), "n": 447911123456},  # a number nobody declared
        {**text("hi"), "digits": [0, 7, 9, 1, 1, 1, 2, 3, 4, 5, 6]},
        {**text("hi"), "m.relates_to": {"rel_type": "m.thread", "event_id": "$e", "x": PHONE}},
        {**text("hi"), "m.relates_to": {"rel_type": f"call {PHONE}", "event_id": "$e"}},
        {**text("hi"), "m.relates_to": {"m.in_reply_to": {"event_id": "$e", "note": PHONE}}},
        {**text("hi"), "m.relates_to": {"is_falling_back": f"whatsapp {PHONE}"}},
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "x", "n": PHONE}},
    ],
)
def test_no_field_a_sender_chose_escapes(content: dict) -> None:
    event_type = "m.reaction" if "msgtype" not in content else "m.room.message"
    assert Rule.CONTACT_DETAILS in broken(content, event_type)


@pytest.mark.parametrize(
    "html",
    [
        '<ol start="447911123456"><li>a</li></ol>',
        f'<span data-mx-spoiler="whatsapp {PHONE}">x</span>',
        f'<span data-mx-maths="{PHONE}">x</span>',
        f"<!-- {PHONE} -->",
        f"<!-->{PHONE}<!-- -->",  # a comment to Python, text to an HTML5 parser
        f"<!-- x --!>{PHONE}<!-- -->",
        f'<font color="#{PHONE}">x</font>',
    ],
)
def test_every_attribute_and_comment_of_an_html_body_is_read(html: str) -> None:
    content = {**text("hi"), "format": "org.matrix.custom.html", "formatted_body": html}
    assert Rule.CONTACT_DETAILS in broken(content)


def test_declared_numbers_and_identifiers_in_their_grammar_are_not_read() -> None:
    content = {
        "msgtype": "m.image",
        "body": "bike.jpg",
        "url": "mxc://localhost/07911123456",  # an identifier: a residual no client renders
        "info": {"mimetype": "image/jpeg", "size": 7911123, "w": 4032, "h": 3024},
        "m.mentions": {"user_ids": ["@seller-12345678:localhost"], "room": False},
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$F8HFrx-Q7yq2xStx7ciC8GRx3WE73"},
        "format": "org.matrix.custom.html",
        "formatted_body": '<a href="https://matrix.to/#/!r1234567:hs/$e1234567?via=hs">x</a>'
        '<img src="mxc://hs/12345678901234" alt="bike">',
    }
    assert broken(content) == []
