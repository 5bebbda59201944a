"""Findings' spans, masking, and messages of one sender judged together."""

from __future__ import annotations

import itertools

import pytest

from policy.contact import (
    DEFAULT_TERMS,
    KINDS,
    Finding,
    find_contact_details,
    find_contact_details_across,
    mask_contact_details,
)

ALLOWED = ("example.com",)


def test_kinds() -> None:
    assert KINDS == ("email", "phone", "link", "iban", "wallet", "term")


def test_findings_compare_by_kind_and_text_only() -> None:
    assert Finding("phone", "07911 123456", 5, 17) == Finding("phone", "07911 123456")
    assert Finding("phone", "07911 123456") != Finding("email", "07911 123456")


@pytest.mark.parametrize(
    "text",
    [
        "mail me: jo at gmx dot de, or +44 20 7946 0958",
        "Whats\u200bApp +44 7911 123456 / paypal.me/jo / IBAN DE89370400440532013000",
        "\u00bd price: 0791\u00bd112\u00bd3456",  # a character that folds to three
        "caf\u00e9 \u2460\u2461\u2462\u2463\u2464\u2465\u2466\u2467 na\u0308ive",  # marks dropped
        "\u200b\u200bjohn@example.org\u200b",  # invisible characters around
    ],
)
def test_spans_point_into_the_original(text: str) -> None:
    findings = find_contact_details(text, (), DEFAULT_TERMS)
    assert findings
    for finding in findings:
        assert text[finding.start : finding.end] == finding.text
    starts = [f.start for f in findings]
    assert starts == sorted(starts)
    assert all(a.end <= b.start for a, b in itertools.pairwise(findings))


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "mail me: jo at gmx dot de, or +44 20 7946 0958!",
            "mail me: [contact details hidden], or [contact details hidden]!",
        ),
        ("see https://example.com/item/1", "see https://example.com/item/1"),
        ("Is it still available?", "Is it still available?"),
        ("", ""),
        ("insta: @jo_b, thanks", "[contact details hidden], thanks"),
        ("z\u00e9ro six douze trente-quatre cinquante-six", "[contact details hidden]"),
    ],
)
def test_mask_contact_details(text: str, masked: str) -> None:
    assert mask_contact_details(text, ALLOWED, DEFAULT_TERMS) == masked


def test_mask_with_a_marker_of_ones_own() -> None:
    assert mask_contact_details("call 07911 123456", (), (), "***") == "call ***"
    assert mask_contact_details("add me on whatsapp", (), ("whatsapp",), "") == "add me on "


def across(*texts: str) -> list[Finding]:
    findings = find_contact_details_across(list(texts), ALLOWED, DEFAULT_TERMS)
    for finding in findings:
        assert texts[-1][finding.start : finding.end] == finding.text
    return findings


@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (("0791", "1123456"), [Finding("phone", "1123456", 0, 7)]),
        (("hi", "call me on 0791", "112 3456 thanks"), [Finding("phone", "112 3456", 0, 8)]),
        (("zero seven nine one", "one two three four"), [Finding("phone", "one two three four")]),
        (("my email is john", "@gmail.com"), [Finding("email", "@gmail.com")]),
        (("add me on", "signal"), [Finding("term", "signal")]),
        (("07911 123456", "thanks"), []),  # judged when it was sent
        (("whatsapp?", "no"), []),
        (("07911 123456",), [Finding("phone", "07911 123456", 0, 12)]),  # a message alone
        (("ok", "ok"), []),
        ((), []),
    ],
)
def test_messages_judged_together(texts: tuple[str, ...], expected: list[Finding]) -> None:
    assert across(*texts) == expected


def test_a_finding_from_earlier_messages_is_clipped_to_the_newest() -> None:
    [finding] = across("call 07911", "123 456 ok")
    assert (finding.kind, finding.start, finding.end) == ("phone", 0, 7)
    assert finding.text == "123 456"


def test_earlier_messages_are_read_back_only_so_far() -> None:
    long_ago = "0791 " + "word " * 1000  # the digits are more than 2,000 characters back
    assert across(long_ago, "1123456") == []
    assert across("0791 word", "1123456") == []  # a word after the digits ends the number
    assert across("0791", "word " * 10 + "1123456") == []  # and so does one before them


def test_the_newest_message_alone_is_judged_as_usual() -> None:
    text = "write to jo@example.org or call +44 20 7946 0958"
    alone = find_contact_details(text, ALLOWED, DEFAULT_TERMS)
    assert across("hello", text) == alone
    assert [(f.start, f.end) for f in across("hello", text)] == [(f.start, f.end) for f in alone]
