"""Contact detection tables: every kind with its evasions, and ordinary chat that stays quiet.

Look-alike and invisible characters are written as escapes: \\u200b is a zero-width space,
\\u0430 a Cyrillic a, \\uff20 a fullwidth @.
"""

from __future__ import annotations

import pytest

from policy.contact import (
    DEFAULT_TERMS,
    KINDS,
    Finding,
    contains_contact_info,
    find_contact_details,
)

ALLOWED = ("example.com",)


def found(text: str, allowed=(), terms=DEFAULT_TERMS) -> list[Finding]:
    return find_contact_details(text, allowed, terms)


def whole(*texts: str) -> list[tuple[str, str]]:
    """Table rows for messages that are nothing but the finding."""
    return [(text, text) for text in texts]


# (message, the email as found in it)
EMAILS = [
    ("write to john.smith@gmail.com", "john.smith@gmail.com"),
    ("mail me: john at gmail dot com", "john at gmail dot com"),
    ("I'm john at gmail", "john at gmail"),  # a big provider needs no .com
    ("john(at)example(dot)co(dot)uk please", "john(at)example(dot)co(dot)uk"),
    *whole(
        "JOHN@EXAMPLE.COM",
        "john (at) example (dot) com",
        "john [at] example [dot] com",
        "john{at}example.com",
        "john @ example . com",
        "john\uff20example\uff0ecom",  # fullwidth @ and .
        "n.a.m.e@gmail.com",
        "jo\u200bhn@exa\u200bmple.com",  # zero-width spaces
        "j\u043ehn@gm\u0430il.com",  # Cyrillic o and a
        "anna@shop.museum",  # any top-level domain after a real @
        "support@example.com",  # an email even at an allowed host
    ),
]


@pytest.mark.parametrize(("text", "email"), EMAILS)
def test_emails(text: str, email: str) -> None:
    assert Finding("email", email) in found(text, ALLOWED)


# (message, the phone number as found in it)
PHONES = [
    ("call +44 20 7946 0958", "+44 20 7946 0958"),
    ("on 0791\u200b1123456", "0791\u200b1123456"),
    ("call07911123456", "07911123456"),
    ("12/05/2024 07911 123456", "07911 123456"),  # a date in front does not hide it
    ("\u20ac 612 345 678", "612 345 678"),  # nor a currency sign
    ("\u20ac 7 911 123 456", "7 911 123 456"),
    *whole(
        "0044 20 7946 0958",
        "+1 (555) 123-4567",
        "+33 6 12 34 56 78",
        "07911 123456",
        "555-123-4567",
        "06.12.34.56.78",
        "0612345678",
        "(020) 7946 0958",
        "0 7 9 1 1 1 2 3 4 5 6",
        "0-7-9-1/1.1 2 3-4.5/6",
        "07/91/12 34 56",  # slashes, but no date
        "zero seven nine one one one two three four five six",
        "oh seven nine double one one two three four five six",
        "o seven double nine one two triple three",
        "zero, seven, nine, one, one, two, three, four",
        "zeroseven nine 1 1 1 2 3 4 5 6",
        "07911 one two three four five six",
        "O7911 l23456",  # letters O and l for 0 and 1
        "\uff10\uff17\uff19\uff11\uff11 \uff11\uff12\uff13\uff14\uff15\uff16",  # fullwidth
        "\u0660\u0667\u0669\u0661\u0661\u0661\u0662\u0663\u0664\u0665\u0666",  # Arabic-Indic
        "4711 0815 2233 9944",  # 16 digits: a card number, or two phone numbers
        "1 07911 123456 0",  # no upper limit: digits around a number do not hide it
    ),
]


@pytest.mark.parametrize(("text", "phone"), PHONES)
def test_phones(text: str, phone: str) -> None:
    assert Finding("phone", phone) in found(text)


# (message, the link as found in it)
LINKS = [
    ("see https://evil.io/item?id=7.", "https://evil.io/item?id=7"),
    ("go to evil.com!", "evil.com"),
    *whole(
        "http://evil.io",
        "hxxp://evil.io",
        "hxxps://evil[.]com/x",
        "www.shop.org",
        "EVIL.COM",
        "bit.ly/x",
        "t.me/name",
        "wa.me/447911123456",
        "shop.evil.ru/path",
        "evil dot com",
        "evil(dot)com",
        "evil [.] com",
        "evil . com",
        "evil (dot) me",  # a word-like top-level domain, plainly obfuscated
        "amazon.it",
        "ev\u200bil.com",  # zero-width space
        "\u0435vil.com",  # Cyrillic e
        "evil\uff0ecom",  # fullwidth full stop
        "evil\u3002com",  # ideographic full stop
    ),
]


@pytest.mark.parametrize(("text", "link"), LINKS)
def test_links(text: str, link: str) -> None:
    assert Finding("link", link) in found(text, ALLOWED)


# (message, allowed hosts, what is found): the marketplace's own site is no finding.
ALLOWED_HOSTS = [
    ("https://example.com/item/1", ALLOWED, []),
    ("shop.example.com", ALLOWED, []),
    ("www.EXAMPLE.com/x", ALLOWED, []),
    ("https://shop.example.com/item/12345678901", ALLOWED, []),  # its ids are no phone
    ("see it at example.com", ALLOWED, []),
    ("Find the bike at example.com", ALLOWED, []),  # "at" the site, not an address
    ("example.com/item/DE89370400440532013000", ALLOWED, []),
    ("example dot com", ALLOWED, []),
    ("shop.example.com", ("  Example.COM. ",), []),
    ("shop.example.com", ("https://example.com/",), []),
    ("shop.example.com", "example.com", []),  # one host, not its letters
    ("shop.example.com", (), [Finding("link", "shop.example.com")]),
    ("example.com.evil.io", ALLOWED, [Finding("link", "example.com.evil.io")]),
    ("notexample.com", ALLOWED, [Finding("link", "notexample.com")]),
    ("example.co", ALLOWED, [Finding("link", "example.co")]),
    ("https://example.com@evil.io/", ALLOWED, [Finding("link", "https://example.com@evil.io/")]),
    ("see example.com and evil.io", ALLOWED, [Finding("link", "evil.io")]),
    ("see it at ebay.com", ALLOWED, [Finding("link", "ebay.com")]),
    ("I\u2019m at ebay.com", ALLOWED, [Finding("link", "ebay.com")]),  # "m" is no mailbox
]


@pytest.mark.parametrize(("text", "allowed", "expected"), ALLOWED_HOSTS)
def test_allowed_hosts(text: str, allowed, expected: list[Finding]) -> None:
    assert found(text, allowed) == expected


# (message, the IBAN as found in it); the checksum is not required
IBANS = [
    ("IBAN: DE89370400440532013000, thanks", "DE89370400440532013000"),
    *whole(
        "DE89 3704 0044 0532 0130 00",
        "GB29NWBK60161331926819",
        "gb29 nwbk 6016 1331 9268 19",
        "FR76-3000-6000-0112-3456-7890-189",
        "NL91ABNA0417164300",
        "DE88 3704 0044 0532 0130 00",  # wrong checksum
        "\uff24\uff25\uff18\uff19 3704 0044 0532 0130 00",  # fullwidth DE89
    ),
]


@pytest.mark.parametrize(("text", "iban"), IBANS)
def test_ibans(text: str, iban: str) -> None:
    assert Finding("iban", iban) in found(text)


# IBAN-like, but not the shape of one (the digits may still be a phone number)
NOT_IBANS = [
    "DE89 3704 0044 0532 0130",  # two characters short of a German IBAN
    "DE89 3704 0044 0532 0130 0012",  # two too many
    "DE00 3704 0044 0532 0130 00",  # check digits 00 are never issued
    "XX89 3704 0044 0532 0130 00",  # no such country
    "GB12 ABCD EFGH IJKL MNOP QR",  # a product code: no digits
]


@pytest.mark.parametrize("text", NOT_IBANS)
def test_not_ibans(text: str) -> None:
    assert "iban" not in [f.kind for f in found(text)]


# (message, the term as found in it), with DEFAULT_TERMS
TERMS = [
    ("add me on whatsapp", "whatsapp"),
    *whole(
        "WhatsApp",
        "w h a t s a p p",
        "w.h.a.t.s.a.p.p",
        "whats app",
        "What'sApp",
        "What\u2019sApp",
        "wh4ts4pp",
        "what\u200bsapp",  # zero-width space
        "wha\u0301tsa\u0301pp",  # combining accents
        "\u051d\u04bb\u0430ts\u0430\u0440\u0440",  # Cyrillic w, h, a, p
        "W\u0397ATS\u0391PP",  # Greek capital eta and alpha
        "\uff57\uff48\uff41\uff54\uff53\uff41\uff50\uff50",  # fullwidth
        "telegr@m",
        "Telegramm",
        "p@yp@l",
        "pay pal",
        "p.a.y.p.a.l",
        "Western Union",
        "westernunion",
        "cash app",
        "CashApp",
        "WeChat",
        "we-chat",
        "v i b e r",
        "$kr1ll",
        "venm0",
    ),
]


@pytest.mark.parametrize(("text", "term"), TERMS)
def test_terms(text: str, term: str) -> None:
    assert Finding("term", term) in found(text)


@pytest.mark.parametrize(
    ("text", "terms", "expected"),
    [
        ("hit me up on k1k", ("kik",), [Finding("term", "k1k")]),
        ("hit me up on k1k", "kik", [Finding("term", "k1k")]),  # one term, not its letters
        ("pay with Lydia", ("LYDIA",), [Finding("term", "Lydia")]),
        ("can I pay by bank?", ("pay by bank",), [Finding("term", "pay by bank")]),
        ("add me on whatsapp", (), []),  # only the terms given
        ("add me on whatsapp", ("", "  "), []),
    ],
)
def test_configured_terms(text: str, terms, expected: list[Finding]) -> None:
    assert found(text, terms=terms) == expected


# Ordinary marketplace chat: nothing at all may be found, with DEFAULT_TERMS.
ORDINARY = [
    "Can you ship it by Friday?",
    "Is it still available?",
    "The lid is missing, otherwise fine :)",
    # prices, dates, times, years, sizes, quantities, order numbers
    "The price is £1,250.00",
    "I paid 99.99 EUR",
    "Would you take 1250 EUR for it?",
    "$ 99.99 plus shipping",
    "€ 1 250 000.00 for the flat",
    "Price: 1.250.000,00 € negotiable",
    "It costs 45 dollars, 2 for 80",
    "Order #12345 shipped on 12/05/2024",
    "Order #1234567 is on its way",
    "Delivered 2024-05-12, all good",
    "Pickup 12.05.2024 between 10:30-12:00",
    "Pickup 12/05/2024 10 am",
    "Available 12/05-14/05",
    "Open 10.30 - 12.00 on Saturdays",
    "It was made in 1998",
    "Made 1990-2024, still works",
    "Season 2019/2020 shirt, worn twice",
    "Size 42, 10x20 cm",
    "I can do 2 x 3 boxes",
    "Dimensions: 120 x 80 x 45 cm",
    "Screen 1920x1080, 16 GB RAM",
    "Sizes 38 and 40, 42 sold out",
    "Shipping: 3-5 days",
    "Part no. GB12 ABCD EFGH IJKL MNOP QR",
    "IMG_20240512_103000.jpg",
    "PXL_20240512_103000123.jpg",
    "IMG-20240512-WA0001.jpg",
    "Screenshot_2024-05-12-10-30-00-123.png",
    "Screenshot 2024-05-12 at 10.30.00.png",
    # dots that are no link, "at" that is no email
    "see the photo.jpg",
    "version 1.2.3",
    "Sent you the invoice.pdf, e.g. for your records",
    "i.e. the blue one",
    "Works with node.js",
    "photos.zip and video.mov attached",
    "I'll be at home. Thanks!",
    "Done. Thanks",
    "Mr. Smith said it's in good condition",
    "Got it.No worries",
    "I work at Tesco. Com on, that's a joke",
    "Polka dot dress, size 10",
    "Meet at the station at 10:30",
    "Meet at the mall at 5 pm",
    "I'm at work. Me and my wife will come",
    "I'm at home . me too",
    "Oh one more thing: the colour is blue",
    "Deal! See you at 5 o'clock",
    # words near a term
    "Can we chat about the price tomorrow?",
    "I prefer cash. App payments are slow",
    "I'll pay, pal.",
    "The gazelle figurine is 30 cm tall",
    "A revolution in comfort!",
    "The telegraph pole is in front",
    # other languages and scripts
    "Это ещё доступно? Могу забрать завтра за 1500 руб.",  # noqa: RUF001 (real Russian)
    "Ist das noch da? Abholung am 12.05. um 10.30 Uhr",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_chat_finds_nothing(text: str) -> None:
    assert found(text, ALLOWED) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mail john@x.com or call 07911 123456, whatsapp too, or see evil.io",
            [
                ("email", "john@x.com"),
                ("phone", "07911 123456"),
                ("term", "whatsapp"),
                ("link", "evil.io"),
            ],
        ),
        (
            "Whats\u200bApp +44 7911 123456 / paypal.me/jo / IBAN DE89370400440532013000",
            [
                ("term", "Whats\u200bApp"),
                ("phone", "+44 7911 123456"),
                ("link", "paypal.me/jo"),
                ("iban", "DE89370400440532013000"),
            ],
        ),
        ("jo at gmx dot de", [("email", "jo at gmx dot de")]),  # its domain is no link too
    ],
)
def test_findings_in_order_of_appearance(text: str, expected: list[tuple[str, str]]) -> None:
    findings = found(text)
    assert [(f.kind, f.text) for f in findings] == expected
    rest = text
    for finding in findings:
        _, match, rest = rest.partition(finding.text)
        assert match, f"{finding.text!r} is not in the text after the previous finding"


@pytest.mark.parametrize(
    "text", [text for text, _ in EMAILS + PHONES + LINKS + IBANS + TERMS] + ORDINARY
)
def test_contains_contact_info_agrees(text: str) -> None:
    findings = found(text, ALLOWED)
    assert contains_contact_info(text, ALLOWED, DEFAULT_TERMS) is bool(findings)
    assert all(f.kind in KINDS and f.text in text for f in findings)
