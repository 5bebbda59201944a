"""Messages built to make the detector slow (64 KiB, the most an event may carry): they must
be judged, not crash or hang. Timing is the benchmark's business; the timeout here only
turns a hang into a failure."""

from __future__ import annotations

import pytest

from policy.contact import (
    DEFAULT_TERMS,
    find_contact_details,
    find_contact_details_across,
    mask_contact_details,
)

SIZE = 65536


def repeated(piece: str) -> str:
    return (piece * (SIZE // len(piece) + 1))[:SIZE]


ADVERSARIAL = {
    "digits and single spaces": repeated("1 "),
    "digits alone": "7" * SIZE,
    "a.a.a.": repeated("a."),
    "hosts with a top-level domain": repeated("a.com."),
    "@ @": repeated("@ "),
    "a@a.": repeated("a@a."),
    "at and dot": repeated("a at b dot "),
    "number words": repeated("seven "),
    "French number words": repeated("quatre-vingt-dix-neuf "),
    "emoji between digits": repeated("1\U0001f525"),
    "one long word": "a" * SIZE,
    "alternating scripts": repeated("a\u0430\u03b1\u0561\u13aa"),
    "letters between digits": repeated("0791a112b"),
    "single letters between digits": repeated("1 a "),
    "spaced-out letters": repeated("a "),
    "spaced-out dots": repeated("a . "),
    "CJK numerals": repeated("\u4e00\u4e8c\u4e09"),
    "circled digits": repeated("\u2460\u278a\u24f5"),
    "prices": repeated("\u00a31 "),
    "price lists": repeated("12.50, "),
    "dates": repeated("1/1 "),
    "times": repeated("10:30 "),
    "years": repeated("2019, "),
    "sizes": repeated("1x1 "),
    "order numbers": repeated("order 1 "),
    "phone cues": repeated("call 123456 "),
    "leetspeak": repeated("wh4t "),
    "a term's beginning": repeated("s "),
    "terms in context": repeated("add me on signal "),
    "handles": repeated("ig @ab "),
    "wallet-like": repeated("1A"),
    "IBAN beginnings": repeated("DE89 "),
    "links": repeated("www."),
    "schemes": repeated("http://"),
    "underscored at and dot": repeated("a_at_b_dot_"),
    "hyphenated at and dot": repeated("a-at-gmail-dot-"),
    "mail providers named": repeated("my gmail is a.b "),
    "misspelt terms": repeated("whatsap "),
    "aliases": repeated("tg "),
    "handle-like names": repeated("ig a.b "),
    "shorteners": repeated("goo.gl "),
    "quantities with units": repeated("1 200 km "),
    "coordinates": repeated("48.8584, 2.2945 "),
    "base58 tokens": repeated("LdP8Qox1VAhCzLJNqrr74YovaWYyNBUWvL "),
    "solana cues": repeated("send 7EcDhSYGxXyscszYEp35KHN8vvw3svAuLKTzXwCFLtV "),
    "line breaks": "\n" * SIZE,
    "zero-width characters": repeated("\u200b1"),
    "combining marks": repeated("a\u0301"),
    "everything at once": repeated(
        "wh4t 1 a.com a@b.co 12/05 \u00a31 0791a112 zero seven \U0001f525 \u2460\u4e00 "
    ),
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("text", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_input_is_judged(text: str) -> None:
    findings = find_contact_details(text, ("example.com",), DEFAULT_TERMS)
    assert all(text[f.start : f.end] == f.text for f in findings)
    masked = mask_contact_details(text, ("example.com",), DEFAULT_TERMS)
    assert len(masked) <= len(text) + 26 * len(findings)


def test_a_long_run_of_digits_is_one_phone_number() -> None:
    [finding] = find_contact_details(repeated("1 "), (), ())
    assert finding.kind == "phone"


def test_past_its_limit_a_detector_claims_the_rest_of_the_message() -> None:
    # Abuse with thousands of candidates: the first ones one by one, the rest as one.
    text = repeated("skype ")
    findings = find_contact_details(text, (), DEFAULT_TERMS)
    assert 100 < len(findings) < 200
    assert findings[-1].end == len(text)
    assert mask_contact_details(text, (), DEFAULT_TERMS).count("skype") == 0


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "earlier",
    [["0791"] * 30 + ["hi"] * 20, ["1 " * 1000] * 5, ["2018"] * 50, [repeated("0 ")]],
    ids=["split digits and fillers", "long digit runs", "years", "a 64 KiB message"],
)
@pytest.mark.parametrize("newest", [repeated("1 "), repeated("0791 "), "1 2 3 4 5 6 7 8 9"])
def test_adversarial_messages_are_judged_together(earlier: list[str], newest: str) -> None:
    findings = find_contact_details_across([*earlier, newest], ("example.com",), DEFAULT_TERMS)
    assert all(newest[f.start : f.end] == f.text for f in findings)
