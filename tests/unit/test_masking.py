"""Masking before delivery, the pure part: every text a client may render loses its contact
details to the marker, and nothing else changes."""

from __future__ import annotations

from typing import Any

import pytest

from policy.masking import MARKER, MASKED_KEY, mask_content, mask_id_of, with_masking
from policy.messages import rendered_texts
from policy.rules import Action, Rule, Verdict, contact_violation
from policy.states import Access
from tests.unit.test_rendered import PHONE, rules


def clean(content: dict[str, Any], earlier: tuple[str, ...] = ()) -> bool:
    """Nothing a client renders of ``content`` still holds a contact detail."""
    return contact_violation(rendered_texts(content), rules(), earlier) is None


def test_an_ordinary_message_is_left_alone() -> None:
    content = {"msgtype": "m.text", "body": "Is it still available for 120 EUR? Order 4512."}
    assert mask_content(content, rules()) is None


def test_the_detail_becomes_the_marker_and_the_rest_stays() -> None:
    masked = mask_content(
        {"msgtype": "m.text", "body": f"ok, call me on {PHONE} tonight"}, rules()
    )
    assert masked == {"msgtype": "m.text", "body": f"ok, call me on {MARKER} tonight"}


def test_an_html_body_holding_a_detail_is_dropped_with_its_format() -> None:
    content = {
        "msgtype": "m.text",
        "body": "see my profile",
        "format": "org.matrix.custom.html",
        "formatted_body": '<a href="https://wa.me/447911123456">see my profile</a>',
    }
    masked = mask_content(content, rules())
    assert masked == {"msgtype": "m.text", "body": "see my profile"}


def test_an_html_body_without_details_is_kept() -> None:
    content = {
        "msgtype": "m.text",
        "body": f"call {PHONE}",
        "format": "org.matrix.custom.html",
        "formatted_body": "<b>hello</b>",
    }
    masked = mask_content(content, rules())
    assert masked is not None
    assert masked["formatted_body"] == "<b>hello</b>" and masked["body"] == f"call {MARKER}"


def test_an_edits_new_content_is_masked_wherever_it_sits() -> None:
    content = {
        "msgtype": "m.text",
        "body": "* fine",
        "m.new_content": {"msgtype": "m.text", "body": f"whatsapp me {PHONE}"},
    }
    masked = mask_content(content, rules())
    assert masked is not None and clean(masked)
    assert masked["body"] == "* fine"
    assert PHONE not in str(masked)


def test_captions_and_file_names_are_masked_but_the_file_is_kept() -> None:
    content = {
        "msgtype": "m.image",
        "body": f"front view, text {PHONE}",
        "filename": "seller.bob@gmail.com.jpg",
        "url": "mxc://example/abc",
        "info": {"mimetype": "image/jpeg", "size": 1000},
    }
    masked = mask_content(content, rules())
    assert masked is not None and clean(masked)
    assert masked["url"] == "mxc://example/abc" and masked["info"] == content["info"]
    assert "gmail" not in masked["filename"]


def test_a_detail_split_between_two_fields_hides_every_text() -> None:
    content = {
        "msgtype": "m.file",
        "body": "call 07911",
        "filename": "123456",
        "url": "mxc://example/abc",
    }
    assert not clean(content)  # together they are a phone number, apart they are not
    masked = mask_content(content, rules())
    assert masked == {
        "msgtype": "m.file",
        "body": MARKER,
        "filename": MARKER,
        "url": "mxc://example/abc",
    }


def test_the_end_of_a_number_split_across_messages_is_masked() -> None:
    earlier = ("my number is 07911",)
    content = {"msgtype": "m.text", "body": "123456"}
    assert not clean(content, earlier)
    masked = mask_content(content, rules(), earlier)
    assert masked is not None and clean(masked, earlier)
    assert "123456" not in masked["body"]


def test_a_reaction_key_is_masked() -> None:
    content = {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": PHONE}}
    masked = mask_content(content, rules())
    assert masked == {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": MARKER}
    }


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ({MASKED_KEY: {"rules": ["contact_details"], "id": "abc"}}, "abc"),
        ({MASKED_KEY: {"id": ""}}, None),
        ({MASKED_KEY: {"id": "x" * 65}}, None),
        ({MASKED_KEY: {"id": 5}}, None),
        ({MASKED_KEY: "abc"}, None),
        ({}, None),
        ("not an object", None),
    ],
)
def test_the_mask_id_is_read_only_in_its_shape(content: Any, expected: str | None) -> None:
    assert mask_id_of(content) == expected


def test_a_masked_message_is_a_violation_without_a_redaction() -> None:
    verdict = with_masking(Verdict((), frozenset()), rules(), Access.OPEN)
    assert [v.rule for v in verdict.violations] == [Rule.CONTACT_DETAILS]
    assert verdict.violations[0].findings == ("masked",)
    assert Action.REDACT not in verdict.actions and Action.WARN in verdict.actions


def test_a_made_up_key_naming_a_detail_is_dropped_and_other_fields_masked() -> None:
    content = {
        "msgtype": "m.text",
        "body": "hi",
        f"whatsapp {PHONE}": True,
        "url": "https://wa.me/447911123456",
        "n": 447911123456,
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$e", "note": PHONE},
    }
    masked = mask_content(content, rules())
    assert masked is not None and clean(masked)
    assert masked == {
        "msgtype": "m.text",
        "body": "hi",
        "url": MARKER,
        "n": MARKER,
        "m.relates_to": {"rel_type": "m.thread", "event_id": "$e", "note": MARKER},
    }


def test_an_edit_ending_a_number_begun_earlier_is_masked() -> None:
    earlier = ("my number starts 07911",)
    content = {
        "msgtype": "m.text",
        "body": "* edited",
        "m.new_content": {"msgtype": "m.text", "body": "123456"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": "$e"},
    }
    assert not clean(content, earlier)
    masked = mask_content(content, rules(), earlier)
    assert masked is not None and clean(masked, earlier)
    assert "123456" not in masked["m.new_content"]["body"]


def test_each_text_is_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Masking reuses what the check found: a body alone is read once in all (a 64 KiB
    message is costly enough: bench/judge.py); with an HTML body, each text once."""
    import policy.contact as contact

    reads: list[str] = []

    def find(text: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(text)
        return real_find(text, *args, **kwargs)

    real_find = contact.find
    monkeypatch.setattr(contact, "find", find)
    masked = mask_content({"msgtype": "m.text", "body": f"call me on {PHONE}"}, rules())
    assert masked == {"msgtype": "m.text", "body": f"call me on {MARKER}"}
    assert reads == [f"call me on {PHONE}"]
    reads.clear()
    content = {
        "msgtype": "m.text",
        "body": f"call {PHONE}",
        "format": "org.matrix.custom.html",
        "formatted_body": f"<b>text {PHONE}</b>",
    }
    assert mask_content(content, rules()) == {"msgtype": "m.text", "body": f"call {MARKER}"}
    assert reads == [f"call {PHONE}\ntext {PHONE}", f"call {PHONE}", f"text {PHONE}"]
