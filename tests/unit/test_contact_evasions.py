"""Evasions by class, each with the piece of the message that must be found (its span), and
combinations of them. Look-alike characters are written as escapes; their names are in the
comments. More one-line cases are in corpus/evasions.txt (test_contact_corpus.py).
"""

from __future__ import annotations

import pytest

from policy.contact import DEFAULT_TERMS, Finding, find_contact_details


def found(text: str, terms=DEFAULT_TERMS) -> list[Finding]:
    findings = find_contact_details(text, ("example.com",), terms)
    assert all(text[f.start : f.end] == f.text for f in findings)
    return findings


def whole(*texts: str) -> list[tuple[str, str]]:
    return [(text, text) for text in texts]


# 1. Separators of any kind between digit groups: (message, the phone number in it)
SEPARATED = [
    ("call 07911,123,456 now", "07911,123,456"),
    ("it's 06, 12, 34, 56, 78 ok?", "06, 12, 34, 56, 78"),
    ("0791:112:3456.", "0791:112:3456"),
    ("number;0791;112;3456;", "0791;112;3456"),
    ("0791\U0001f525112\U0001f525 3456", "0791\U0001f525112\U0001f525 3456"),  # fire emoji
    ("0791a112b3456", "0791a112b3456"),
    ("here 07x91yz11 23w456 bye", "07x91yz11 23w456"),
    ("0791 a 112 b 3456", "0791 a 112 b 3456"),
    ("07911" + " " * 40 + "123456", "07911" + " " * 40 + "123456"),
    ("0791\n\n\n\n\n112\n\n3456", "0791\n\n\n\n\n112\n\n3456"),
    ("0791\t112\t3456", "0791\t112\t3456"),
    ("it's 06 dot 12 dot 34 dot 56 dot 78", "06 dot 12 dot 34 dot 56 dot 78"),
    ("ring + 44 7911 123456", "+ 44 7911 123456"),  # the span begins at the +
    ("(+33) 6 12 34 56 78", "(+33) 6 12 34 56 78"),
    ("\u20ac12, 34, 56, 78", "12, 34, 56, 78"),  # a currency sign hides nothing
    ("12/05/2024, 07911 123456", "07911 123456"),  # nor does a date in front
]


@pytest.mark.parametrize(("text", "phone"), SEPARATED)
def test_separators_between_digit_groups(text: str, phone: str) -> None:
    assert Finding("phone", phone) in found(text)


# 2. Numbers in words, English and French (the tens too; French read in pairs)
WORDS = [
    (
        "it's zero seven nine one one two three four five six",
        "zero seven nine one one two three four five six",
    ),
    ("seventy nine seventy nine eleven twelve!", "seventy nine seventy nine eleven twelve"),
    *whole(
        "oh seven nine double one one two three four",
        "o seven nine triple one two three four five",
        "zerosevennine oneonetwo three four",
        "twenty-one thirty-two forty-three fifty-four",
        "z\u00e9ro six douze trente-quatre cinquante-six soixante-dix-huit",  # zéro
        "quatre-vingt-dix-neuf quatre-vingt-dix-neuf quatre-vingt-dix-neuf quatre-vingt-onze",
        "z\u00e9ro sept soixante et onze vingt et un quatre-vingts",
        "dix-sept dix-huit dix-neuf quinze",
        "06 douze trente-quatre cinquante-six",
    ),
]


@pytest.mark.parametrize(("text", "phone"), WORDS)
def test_numbers_in_words(text: str, phone: str) -> None:
    assert Finding("phone", phone) in found(text)


# 3. Digits and letters from other scripts and styles (by Unicode data, not a hand table)
SCRIPTS = [
    ("phone", "\u2460\u2461\u2462\u2463\u2464\u2465\u2466\u2467"),  # circled 1-8
    ("phone", "\u278a\u278b\u278c\u278d\u278e\u278f\u2790\u2791"),  # dingbat negative circled
    ("phone", "\u24f5\u24f6\u24f7\u24f8\u24f9\u24fa\u24fb\u24fc"),  # double circled
    (
        "phone",
        "\u3007\u4e03\u4e5d\u4e00\u4e00\u4e8c\u4e09\u56db",
    ),  # CJK number zero, 7 9 1 1 2 3 4
    ("phone", "\u96f6\u4e03\u4e5d\u4e00 \u4e00\u4e00\u4e8c \u4e09"),  # CJK zero (ling) and digits
    ("phone", "\u2070\u2077\u2079\u00b9\u00b9\u00b9\u00b2\u00b3"),  # superscripts
    ("phone", "\U0001d7ce\U0001d7d5\U0001d7d7\U0001d7cf\U0001d7cf\U0001d7d0\U0001d7d1\U0001d7d2"),
    ("term", "\u1d21\u029c\u1d00\u1d1bs\u1d00\u1d18\u1d18"),  # small capitals: whatsapp
    ("term", "\u13b3\u0570\u0430t\u0455\u0430\u0440\u0440"),  # Cherokee, Armenian, Cyrillic
    ("term", "\uab83hatsapp"),  # Cherokee small la
    ("term", "\U0001f1fc\U0001f1ed\U0001f1e6\U0001f1f9\U0001f1f8\U0001f1e6\U0001f1f5\U0001f1f5"),
    # negative squared letters: telegram
    ("term", "\U0001f183\U0001f174\U0001f17b\U0001f174\U0001f176\U0001f181\U0001f170\U0001f17c"),
    ("term", "paypa\u0142"),  # l with stroke
    ("email", "\u1d0a\u1d0f\u029c\u0274@\u0262\u1d0d\u1d00\u026a\u029f.\u1d04\u1d0f\u1d0d"),
]


@pytest.mark.parametrize(("kind", "text"), SCRIPTS)
def test_other_scripts_and_styles(kind: str, text: str) -> None:
    assert Finding(kind, text) in found(text)


# Combinations of classes
COMBINATIONS = [
    # a CJK digit next to a circled one, and a dingbat one
    (
        "phone",
        "call \u3007\u2460\u4e03\u2791\u4e5d\u24f5 \u4e00\u4e8c\u4e09",
        "\u3007\u2460\u4e03\u2791\u4e5d\u24f5 \u4e00\u4e8c\u4e09",
    ),
    # spelled numbers with emoji separators
    (
        "phone",
        "zero\U0001f525seven\U0001f525nine\U0001f525one\U0001f525one\U0001f525two"
        "\U0001f525three\U0001f525four",
        "zero\U0001f525seven\U0001f525nine\U0001f525one\U0001f525one\U0001f525two\U0001f525three"
        "\U0001f525four",
    ),
    # a French number in pairs with commas
    (
        "phone",
        "z\u00e9ro six, douze, trente-quatre, cinquante-six, soixante-dix-huit.",
        "z\u00e9ro six, douze, trente-quatre, cinquante-six, soixante-dix-huit",
    ),
    # digits, words and another script together
    (
        "phone",
        "07911 one two \u4e09 \u2463 five \U0001f525 6",
        "07911 one two \u4e09 \u2463 five \U0001f525 6",
    ),
    # superscripts with letters between them
    (
        "phone",
        "\u2070\u2077a\u2079\u00b9b\u00b9\u00b9\u00b2\u00b3",
        "\u2070\u2077a\u2079\u00b9b\u00b9\u00b9\u00b2\u00b3",
    ),
    # an address spaced out, with look-alikes and a written-out at
    ("email", "j o h n (at) g m \u0430 i l . c o m", "j o h n (at) g m \u0430 i l . c o m"),
    # a spelled-out address with French words for @ and dot
    ("email", "\u00e9cris \u00e0 jean arobase orange point fr", "jean arobase orange point fr"),
    # a term in small capitals with a handle
    ("term", "\u026a\u0274s\u1d1b\u1d00: @jo_b92", "\u026a\u0274s\u1d1b\u1d00: @jo_b92"),
]


@pytest.mark.parametrize(("kind", "text", "piece"), COMBINATIONS)
def test_combinations(kind: str, text: str, piece: str) -> None:
    assert Finding(kind, piece) in found(text)


# 4. E-mail addresses spaced out and spelled out: (message, the address in it)
EMAILS = [
    ("write j o h n @ g m a i l . c o m", "j o h n @ g m a i l . c o m"),
    ("john . smith @ gmail . com please", "john . smith @ gmail . com"),
    ("jean arobase orange point fr", "jean arobase orange point fr"),
    ("mail: hans at gmx punkt de", "hans at gmx punkt de"),
    ("john(a)gmail.com", "john(a)gmail.com"),
    ("john (a) gmail (dot) com", "john (a) gmail (dot) com"),
    ("jean.dupont chez free point fr", "jean.dupont chez free point fr"),
    ("jean chez orange point fr", "jean chez orange point fr"),  # a mail provider
    ("john dot smith at gmail dot com", "john dot smith at gmail dot com"),
]


@pytest.mark.parametrize(("text", "email"), EMAILS)
def test_spaced_and_spelled_emails(text: str, email: str) -> None:
    assert Finding("email", email) in found(text)


# 5. Off-platform terms, handles and wallets: (message, what is found)
TERMS = [
    ("add me on skype", "skype"),
    ("skype id: jo.b", "skype id: jo.b"),
    ("add me on signal", "signal"),
    ("via Signal", "Signal"),
    ("do you have the signal app?", "signal"),
    ("s.i.g.n.a.l", "s.i.g.n.a.l"),  # spelled out: deliberate, needs no context
    ("insta: @name", "insta: @name"),
    ("IG @jo_b", "IG @jo_b"),
    ("my ig is jo_b92", "ig is jo_b92"),
    ("find @jo_b92 on ig", "@jo_b92 on ig"),
    ("find me on facebook", "facebook"),
    ("text me on messenger", "messenger"),
    ("tiktok", "tiktok"),
    ("discord", "discord"),
    ("add me on snap", "snap"),
    ("threema", "threema"),
    ("my line ID is jo", "line ID is jo"),
    ("add me on line", "line"),
    ("I can pay with wise", "wise"),
    ("wise transfer ok?", "wise"),
]


@pytest.mark.parametrize(("text", "term"), TERMS)
def test_terms_and_handles(text: str, term: str) -> None:
    assert Finding("term", term) in found(text)


# Ordinary words that are also app names count only where they name the app.
@pytest.mark.parametrize(
    "text",
    [
        "the signal is weak",
        "no signal in the garage, I'll call back",
        "stand in line",
        "I'm on line 4 of the form",
        "take the bus via line 3",
        "a wise choice",
        "that was wise",
        "the messenger bag is new",
        "my snap is broken",
        "oh snap",
        "my ig is private",
    ],
)
def test_ordinary_words_stay_quiet(text: str) -> None:
    assert found(text) == []


WALLETS = [
    "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",  # Bitcoin legacy
    "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",  # Bitcoin script
    "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",  # Bitcoin bech32
    "0x52908400098527886E0F7030069857D2E4169EE7",  # Ethereum
    "TJCnKsPa7y5okkXvQAidZBzqx3QyQ6sxMW",  # Tron
]


@pytest.mark.parametrize("address", WALLETS)
def test_wallets(address: str) -> None:
    assert found(f"send it to {address} please") == [Finding("wallet", address)]


@pytest.mark.parametrize(
    "text",
    [
        "1BVBMSEYSTWETQTFN5AU4M4GFG7XJANVN2",  # base58 in one case: no real address
        "1bvbmseystwetqtfn5au4m4gfg7xjanvn2",
        "bc1qAR0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",  # bech32 in mixed case
        "TJCNKSPA7Y5OKKXVQAIDZBZQX3QYQ6SXMW",
    ],
)
def test_wallet_lookalikes_in_one_case_are_no_wallets(text: str) -> None:
    assert "wallet" not in [f.kind for f in found(text)]


# Short numbers: six or seven digits count after a phone cue word or with a country code,
# where libphonenumber finds them possible; never alone.
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call me 555 1234", [Finding("phone", "555 1234")]),
        ("mon num\u00e9ro : 612 34 56", [Finding("phone", "612 34 56")]),
        ("appelle-moi au 61 23 45", [Finding("phone", "61 23 45")]),
        ("+290 2234", [Finding("phone", "+290 2234")]),  # Saint Helena: 4-digit numbers
        ("+33 612 34", []),  # too short for France
        ("555 1234", []),
        ("order 555 1234 shipped", []),
        ("call me, order 1234567 is late", []),  # an order number, named as such
        ("I'm in Tel Aviv, 123456 views", []),
    ],
)
def test_short_numbers(text: str, expected: list[Finding]) -> None:
    assert found(text) == expected


# Deliberately not detected (see the module's docstring): each would flag ordinary chat.
@pytest.mark.parametrize(
    "text",
    [
        "addmeonwhatsapp",  # a term glued to other letters
        "my ig is bob",  # a name after "my ig is" that does not look like a handle
        "john at mycompany",  # no domain ending and no known provider
        "@john_smith",  # a bare handle
        "1961, 2012, 1999",  # a list of years hides digits...
        "7911 x 1234",  # ...and so does a screen size
        "612.34, 567.89",  # amounts with cents, in a list
        "one two three four five six seven",  # seven digits, no cue
    ],
)
def test_deliberately_not_detected(text: str) -> None:
    assert found(text) == []
