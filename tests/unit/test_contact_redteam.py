"""What a live red-team found passing or flagged wrongly, and the decisions taken on it: what
is now found (with its span), what stays quiet, and the trade-offs kept on purpose (see the
docstring of policy/contact/__init__.py)."""

from __future__ import annotations

import pytest

from policy.contact import (
    DEFAULT_TERMS,
    Finding,
    find_contact_details,
    find_contact_details_across,
)

ALLOWED = ("example.com",)


def found(text: str, terms=DEFAULT_TERMS) -> list[Finding]:
    findings = find_contact_details(text, ALLOWED, terms)
    assert all(text[f.start : f.end] == f.text for f in findings)
    return findings


def across(*texts: str) -> list[Finding]:
    findings = find_contact_details_across(list(texts), ALLOWED, DEFAULT_TERMS)
    for finding in findings:
        assert texts[-1][finding.start : finding.end] == finding.text
    return findings


# (message, what is found in it)
FOUND = [
    ("call 07911abcd123456 now", Finding("phone", "07911abcd123456")),
    ("07911banana123456", Finding("phone", "07911banana123456")),
    ("0791nine112 3456", Finding("phone", "0791nine112 3456")),  # a number word still counts
    ("bobseller@gmailcom", Finding("email", "bobseller@gmailcom")),
    ("bob at hotmailfr", Finding("email", "bob at hotmailfr")),
    ("my gmail is bob.seller", Finding("email", "gmail is bob.seller")),
    ("my hotmail: bob_seller thanks", Finding("email", "hotmail: bob_seller")),
    ("bob_seller_at_gmail_dot_com", Finding("email", "bob_seller_at_gmail_dot_com")),
    ("mail bob-seller-at-gmail-dot-com", Finding("email", "bob-seller-at-gmail-dot-com")),
    ("whatsap me", Finding("term", "whatsap")),
    ("watsapp me", Finding("term", "watsapp")),
    ("Telegarm?", Finding("term", "Telegarm")),
    ("whatsup me on it", Finding("term", "whatsup")),
    ("are you on whatsup?", Finding("term", "whatsup")),
    ("tg: @bobseller", Finding("term", "tg: @bobseller")),
    ("tg bob_seller", Finding("term", "tg bob_seller")),
    ("find me on tg", Finding("term", "tg")),
    ("ig: bob.seller", Finding("term", "ig: bob.seller")),
    ("my signal is bob.42", Finding("term", "signal is bob.42")),  # Signal's usernames
    ("my skype is bob.seller", Finding("term", "skype is bob.seller")),
    ("my skype is bobseller", Finding("term", "skype is bobseller")),  # the name is masked too
    ("see goo.gl/x.", Finding("link", "goo.gl/x")),
    ("is.gd/abc", Finding("link", "is.gd/abc")),
    ("goo (dot) gl/x", Finding("link", "goo (dot) gl/x")),
    ("amzn.to/3xyz", Finding("link", "amzn.to/3xyz")),
    (
        "ltc1qg82dygtlh4ldzv8cq0j2h7ze5zhx4pqfgwcslt",
        Finding("wallet", "ltc1qg82dygtlh4ldzv8cq0j2h7ze5zhx4pqfgwcslt"),
    ),
    (
        "LdP8Qox1VAhCzLJNqrr74YovaWYyNBUWvL",
        Finding("wallet", "LdP8Qox1VAhCzLJNqrr74YovaWYyNBUWvL"),
    ),
    (
        "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L",
        Finding("wallet", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"),
    ),
    (
        "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh",
        Finding("wallet", "rEb8TK3gBgk5auZkwc6sHnwrGVJH8DuaLh"),
    ),
    (
        "pay to my solana 7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",
        Finding("wallet", "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV"),
    ),
]


@pytest.mark.parametrize(("text", "finding"), FOUND)
def test_found(text: str, finding: Finding) -> None:
    assert finding in found(text)


@pytest.mark.parametrize(
    "text",
    [
        # ordinary numbers: quantities with a unit, coordinates, a year and a quantity
        "Model year 2018, 45 000 miles, 2 owners",
        "Registered 2016, 123 456 km",
        "2018. 45 000 miles",
        "1 200 km, 2 500 g",
        "coordinates 48.8584, 2.2945",
        "GPS: -33.8568, 151.2153",
        # a misspelling that is a word of its own, a short term, an alias without context
        "Finance available, discard the box, I'll message you",
        "I revolt against this price",
        "hey whatsup",
        "whatsup with the delay?",
        "TG it's Friday",
        "tg mdr",
        # a provider with a plain word, a two-letter term in leetspeak
        "my gmail is full",
        "gmail: check your spam",
        "it weighs 1g more",
    ],
)
def test_stays_quiet(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "phone"),
    [
        ("07911 123456 km", "07911 123456"),  # a unit hides no number next to other digits
        ("0791 112 3456 miles", "0791 112 3456"),
        ("2019, 07911 123456", "2019, 07911 123456"),
    ],
)
def test_units_and_years_hide_no_phone_number(text: str, phone: str) -> None:
    assert Finding("phone", phone) in found(text)


def test_aliases_come_with_their_term_only() -> None:
    assert found("add me on tg", terms=("whatsapp",)) == []
    assert found("add me on tg", terms=("telegram",)) == [Finding("term", "tg")]
    assert found("whatsup me", terms=("whatsapp",)) == [Finding("term", "whatsup")]


# Numbers split across messages: found when libphonenumber agrees (see across.py) ...
@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (("07911", "hi", "ok", "yes", "sure", "123456"), "123456"),  # fillers skipped
        (("0791", "112 3456"), "112 3456"),
        (("+44 7911", "123456"), "123456"),
        (("0044 7911", "123 456"), "123 456"),
        (("06 12", "34 56 78"), "34 56 78"),
        (("call me on 0791", "thanks", "112 3456 ok"), "112 3456"),
        (("I paid 1299", "0791", "112 3456"), "112 3456"),  # it may begin at any group
        (("212", "555 1234"), "555 1234"),  # North American, ten digits
        (("call me", "555 1234"), "555 1234"),  # a cue word and seven digits, as before
        (("zero seven nine one", "one two three four"), "one two three four"),
        (("0791", "112 3456 789 00"), "112 3456 789 00"),  # merged with the newest's own
    ],
)
def test_split_numbers_are_found(texts: tuple[str, ...], expected: str) -> None:
    assert [f.text for f in across(*texts) if f.kind == "phone"] == [expected]


# ... and not when the parts are ordinary numbers, or make no valid number.
@pytest.mark.parametrize(
    "texts",
    [
        ("Model year 2018", "45 000 miles"),
        ("1299", "2000"),
        ("1299", "2000", "1500"),
        ("It's 250", "300 with delivery"),
        ("Built 1998", "12 500 km"),
        ("£1,250", "1 100"),
        ("I have 3", "4 5 6 7 8"),
        ("20", "30", "40", "50"),
        ("12/05/2024", "10:30"),
        ("0791", "Model year 2018"),
        ("0791 thanks", "112 3456"),  # a word inside a message still ends the number
        ("0791", "thanks 112 3456"),
    ],
)
def test_ordinary_numbers_across_messages_stay_quiet(texts: tuple[str, ...]) -> None:
    assert across(*texts) == []


def test_every_text_of_an_edit_is_judged_with_the_earlier_messages() -> None:
    # The caller judges each text t of the newest message as [*earlier, t].
    earlier = ["0791", "ok"]
    assert across(*earlier, "112 3456") == [Finding("phone", "112 3456", 0, 8)]
    assert across(*earlier, "* 112 3456") == [Finding("phone", "112 3456", 2, 10)]


# Trade-offs kept on purpose: each is an ordinary phrase too.
@pytest.mark.parametrize(
    "text",
    [
        "tg bobseller",  # "tg finally sold it": "thank god", and French for "shut up"
        "ig bobseller",  # "ig tomorrow": "I guess"
        "my signal is bobseller",  # "my signal is terrible" (a Signal username has digits)
        "my line is bobseller",  # "my line is busy"
        "my gmail is bobseller",  # "my gmail is full"
        "7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV",  # Solana-like, no cue: any identifier
        "skipe me",  # one edit from a term of fewer than seven letters
    ],
)
def test_deliberately_not_detected(text: str) -> None:
    assert found(text) == []


def test_a_term_named_in_a_refusal_is_still_found() -> None:
    # No principled rule tells "my telegram? I don't use it" from a cue: caught on purpose.
    assert found("my telegram? I don't use it") == [Finding("term", "telegram")]
