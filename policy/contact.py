"""Contact details and off-platform cues in chat messages, found for the policy bot to redact.

While a transaction is open, buyer and seller must settle it on the marketplace. A message
that would move the deal elsewhere is found here, and the bot redacts it:

    "mail me: jo at gmx dot de, or +44 20 7946 0958"
        -> [Finding("email", "jo at gmx dot de"), Finding("phone", "+44 20 7946 0958")]

Kinds: an email address, a phone number, a link, an IBAN, or a configured term ("paypal").

Approach. People who want to get round the bot write ``j0hn (at) gmail (dot) com``, spell
digits out, swap letters for Cyrillic look-alikes or hide zero-width characters, so every
detector reads a *folded* copy of the message: compatibility-decomposed (NFKD, the first
half of NFKC, so fullwidth and mathematical letters become ASCII), marks and invisible
characters dropped, look-alikes and Unicode digits mapped to ASCII, lower case. The folded
copy remembers which original character each of its characters came from, so a finding
reports the original text. The detectors run from the most to the least specific (URLs
with a scheme, emails, other links, IBANs, phone numbers, terms) and each ignores what an
earlier one claimed: an email's domain is not also a link, and the digits of
``wa.me/447911123456`` are not also a phone number. A link to an allowed host is claimed
without a finding, so the marketplace's own URLs (and the ids in them) stay quiet.

Ordinary chat must stay quiet too, so each detector knows what it is not: a word "at" is
an @ only before something domain-shaped; a link needs a known top-level domain (``.pdf``
and ``.js`` are not; ``.zip`` and ``.mov`` are left out on purpose); prices, dates, time
and year ranges and the timestamps in photo names are set aside before digits are joined
into phone numbers; a term matches whole words only, and a spaced-out term ("pay pal")
only where the split is not a plain phrase of ordinary words ("can we chat" is not WeChat)
or a sentence boundary.

Deliberately not detected, because catching them would flag ordinary chat:
- digits as words beyond single digits ("seventy nine"), or in languages other than English;
- a term glued to other letters ("addmeonwhatsapp"): "revolution" and "gazelle" must not be
  Revolut and Zelle; and "we chat" as two plain words;
- an email without a domain-shaped part ("john at gmail" is found: the big providers are
  known; "john at mycompany" is not);
- a link whose top-level domain is an English word ("it", "me", "no", "top"...) written as
  "dot" or " . ", or after a capitalised sentence start ("Got it.No worries"): these count
  with a scheme, "www." or a path ("t.me/name");
- user handles (``@name``) and hosts without a known top-level domain;
- a phone number written as a valid date or an amount with a currency sign ("€ 6 123
  456.78"), or a seven-digit local number without its area code.
And deliberately detected although ordinary chat can produce it: any run of 8 or more
digits (with spaces, dots, dashes, slashes, underscores or brackets between them) that is
not a price, date, timestamp, time range or year range, including long order, tracking and
serial numbers and space-separated lists of numbers ("sizes 38 40 42 44"). There is no
upper limit: 16 digits may be a card number, and a phone number with digits added before
or after it ("1 07911 123456 0") must not pass.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

KINDS = ("email", "phone", "link", "iban", "term")

# Messaging apps and payment services that take a deal off the platform. No ordinary
# English words ("signal", "wise", "line", "cash"), which would flag everyday chat.
DEFAULT_TERMS = (
    "whatsapp",
    "telegram",
    "viber",
    "wechat",
    "skype",
    "snapchat",
    "kakaotalk",
    "paypal",
    "venmo",
    "zelle",
    "western union",
    "moneygram",
    "cash app",
    "revolut",
    "skrill",
    "payoneer",
    "neteller",
    "bitcoin",
    "usdt",
)


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # one of KINDS
    text: str  # the matched piece of the original text (for tests and admin review only)


def find_contact_details(
    text: str, allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> list[Finding]:
    """Every contact detail or off-platform cue in `text`, in order of appearance.

    ``allowed_hosts`` are hosts whose links are fine (a host allows its subdomains);
    ``terms`` are the off-platform words to look for, such as ``DEFAULT_TERMS``.
    """
    if isinstance(allowed_hosts, str):
        allowed_hosts = (allowed_hosts,)  # one host, not its letters
    if isinstance(terms, str):
        terms = (terms,)
    folded, origin = _fold(text)
    allowed = tuple(host for host in map(_host_key, allowed_hosts) if host)
    claims: list[tuple[int, int, str | None]] = []  # (start, end, kind); None claims quietly
    _claim(claims, _urls(folded, allowed))  # first: "https://a.com@b.io" is no email
    _claim(claims, _emails(folded, allowed))
    _claim(claims, _hosts(text, folded, origin, allowed))
    _claim(claims, _ibans(folded))
    _claim(claims, _phones(_masked(folded, claims)))
    _claim(claims, _terms(folded, terms))
    return [
        Finding(kind, _original(text, origin, start, end))
        for start, end, kind in claims
        if kind is not None
    ]


def contains_contact_info(
    text: str, allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> bool:
    """Whether `text` has anything ``find_contact_details`` would find."""
    return bool(find_contact_details(text, allowed_hosts, terms))


def _claim(
    claims: list[tuple[int, int, str | None]], found: Iterable[tuple[int, int, str | None]]
) -> None:
    """Add what a detector found, first and longest first, where nothing is claimed yet.

    ``claims`` never overlap, so kept sorted by start they are sorted by end too.
    """
    for start, end, kind in sorted(found, key=lambda f: (f[0], f[0] - f[1])):
        at = bisect.bisect_right(claims, start, key=lambda c: c[0])
        free_before = at == 0 or claims[at - 1][1] <= start
        free_after = at == len(claims) or claims[at][0] >= end
        if end > start and free_before and free_after:
            claims.insert(at, (start, end, kind))


# Folding ---------------------------------------------------------------------------------

# Letters from other scripts that pass for Latin ones, by the letter they imitate, in both
# cases. Escapes, not the letters, so that the table can be checked without a font that
# tells them apart.
_LOOKALIKES = str.maketrans(
    {
        char: latin
        for latin, chars in {
            "a": "\u0430\u0410\u03b1\u0391\u0251",
            "b": "\u0432\u0412\u044c\u042c\u03b2\u0392",
            "c": "\u0441\u0421\u03f2\u03f9",
            "d": "\u0501\u0500\u0111",
            "e": "\u0435\u0415\u03b5\u0395",
            "g": "\u0261",
            "h": "\u04bb\u04ba\u043d\u041d\u0397",
            "i": "\u0456\u0406\u03b9\u0399\u0131\u0269",
            "j": "\u0458\u0408",
            "k": "\u043a\u041a\u03ba\u039a",
            "l": "\u04cf\u04c0\u0142",
            "m": "\u043c\u041c\u039c",
            "n": "\u043f\u041f\u03b7\u039d",
            "o": "\u043e\u041e\u03bf\u039f\u00f8",
            "p": "\u0440\u0420\u03c1\u03a1",
            "q": "\u051b\u051a",
            "r": "\u0433\u0413",
            "s": "\u0455\u0405",
            "ss": "\u00df",
            "t": "\u0442\u0422\u03c4\u03a4",
            "u": "\u03c5",
            "v": "\u03bd",
            "w": "\u051d\u051c\u03c9",
            "x": "\u0445\u0425\u03c7\u03a7",
            "y": "\u0443\u0423\u03b3\u03a5\u04af",
            "z": "\u0396",
        }.items()
        for char in chars
    }
)
_MARKS = frozenset({"Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: letters, but blank
_APOSTROPHES = frozenset("\u2018\u2019\u201b\u02bc\u02b9\u2032")
_FULL_STOPS = frozenset("\u3002\u2024\ufe52")


def _fold(text: str) -> tuple[str, list[int]]:
    """The folded text, and for each of its characters the index it came from in `text`."""
    parts: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = _fold_char(char)
        parts.append(folded)
        origin.extend([index] * len(folded))
    return "".join(parts), origin


def _fold_char(char: str) -> str:
    if " " <= char <= "~":
        return char.lower()
    if char.isspace():
        return char if char in "\t\n\r" else " "
    if unicodedata.category(char)[0] == "C" or char in _BLANK_LETTERS:
        return ""  # zero-width and other invisible characters, soft hyphen, controls
    out: list[str] = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) in _MARKS:
            continue
        # Look-alikes before lower case: capital eta is an H, small eta an n.
        for low in part.translate(_LOOKALIKES).lower():
            if unicodedata.category(low) not in _MARKS:  # "İ".lower() is "i" and a dot
                out.append(_fold_symbol(low))
    return "".join(out)


def _fold_symbol(char: str) -> str:
    if char.isascii():
        return char
    category = unicodedata.category(char)
    if category == "Nd":
        return str(unicodedata.decimal(char))  # Arabic-Indic, Devanagari... digits
    if category == "Pd" or char == "\u2212":
        return "-"
    if char in _APOSTROPHES:
        return "'"
    if char in _FULL_STOPS:
        return "."
    return " " if char.isspace() else char


def _original(text: str, origin: list[int], start: int, end: int) -> str:
    """The original text of folded characters ``start`` to ``end``."""
    return text[origin[start] : origin[end - 1] + 1]


# Shared pieces of domains: dots, written plainly or not -----------------------------------

_OPEN, _CLOSE = r"[(\[{<]", r"[)\]}>]"
# A dot: ".", " . ", "[.]", "(dot)", " dot ". A "." followed by a space is a sentence end
# ("done. thanks"), unless a space precedes it too ("example . com").
_DOT = rf"(?:\s*{_OPEN}\s*(?:\.|dot)\s*{_CLOSE}\s*|\s+dot\s+|\s+\.\s+|\s*\.(?!\s))"
_DOT_RE = re.compile(_DOT)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Labels after the first. Bounded, so that "a.a.a.a..." costs linear time, not quadratic.
_MORE_LABELS = rf"(?:{_DOT}{_LABEL}){{0,8}}"

# Common generic and country top-level domains: enough to recognise a host without a
# network lookup. Left out: those that are also common file extensions in chat (zip, mov,
# md, py, sh, rs, ps, ai, mk), so that "photos.zip" is not a link.
_TLDS = frozenset(
    """
    com net org edu gov mil int info biz name pro mobi app dev io me ly co cc tv fm gg to ws
    xyz online site website shop store link live club top vip icu fun space tech cloud host
    click today world page blog art win bid life buzz cam best rest lol ink zone ltd agency
    network digital media news social chat email support pw su eu asia tk ml ga cf gq la
    uk de fr ru es it nl be ch at se no dk fi pl pt gr ie cz sk hu ro bg hr si rs ua by kz
    tr il ae sa qa kw za ng ke eg ma tn in jp cn kr br mx ar cl pe ve uy us ca au nz sg hk
    tw my ph th vn id pk bd lk ir lt lv ee is lu li mc mt cy md ge az am uz ba al me
    """.split()
)
# Top-level domains that are English words, which a sentence can produce by accident
# ("I'm at home . Me too", "Got it.No worries"): they need more evidence, see _strong_link.
_WORD_TLDS = frozenset("me to in it is at be no us my by am as so id top live chat email".split())
_TLD = "(?:" + "|".join(sorted(_TLDS, key=len, reverse=True)) + ")"

# Mail providers known well enough that "john at gmail" is an address without a ".com".
_PROVIDERS = "(?:gmail|googlemail|hotmail|yahoo|outlook|icloud|protonmail|gmx|yandex|aol)"


def _host_key(host: str) -> str:
    """An allowed host as given in configuration, as links are compared with it."""
    host = _fold(host.strip())[0]
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0]
    return host.removeprefix("*.").strip(".")


def _host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = re.sub(r"\s+", "", _DOT_RE.sub(".", host)).strip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


# Emails ----------------------------------------------------------------------------------

_LOCAL_BEFORE = r"(?<![a-z0-9._%+'-])"
_EMAIL = re.compile(
    rf"{_LOCAL_BEFORE}[a-z0-9._%+-]+@{_LABEL}(?:\.{_LABEL}){{0,8}}\.[a-z]{{2,24}}(?![a-z0-9-])"
)
# "@" written as "(at)", "[at]", "{at}", " @ " or a plain word " at ".
_AT = rf"(?:\s*{_OPEN}\s*(?:at|@)\s*{_CLOSE}\s*|\s*@\s*|\s+at\s+)"
_WRITTEN_EMAIL = re.compile(
    rf"{_LOCAL_BEFORE}(?P<local>[a-z0-9][a-z0-9._%+-]*)(?P<at>{_AT})"
    rf"(?P<domain>{_LABEL}{_MORE_LABELS}{_DOT}{_TLD}|{_PROVIDERS})(?![a-z0-9-])"
)
# Words before a plain " at " that make it a place, not an address: "see it at ebay.com"
# is a link, "it" is nobody's mailbox.
_NOT_MAILBOXES = frozenset(
    """
    it me us them him her you this that these those one here there look available is are
    am be was were been meet see find found sold listed buy bought sell selling shop order
    ordered online up out only just now also again all item items everything something
    anything nothing price pickup collect arrive arrived home work im pay paid
    """.split()
)


def _emails(folded: str, allowed: tuple[str, ...]) -> Iterator[tuple[int, int, str | None]]:
    for match in _EMAIL.finditer(folded):
        yield match.start(), match.end(), "email"
    for match in _WRITTEN_EMAIL.finditer(folded):
        if match.group("at").strip() == "at":
            # A plain "at" is English first: an address only when it cannot be a place.
            if match.group("local") in _NOT_MAILBOXES:
                continue
            if _host_allowed(match.group("domain"), allowed):
                continue  # "find us at example.com": a link to the marketplace itself
        yield match.start(), match.end(), "email"


# IBANs -----------------------------------------------------------------------------------

# Registered IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "no": 15,
    "be": 16,
    **dict.fromkeys("dk fi fk fo gl nl sd".split(), 18),
    **dict.fromkeys("mk si".split(), 19),
    **dict.fromkeys("at ba ee kz lt lu mn xk".split(), 20),
    **dict.fromkeys("ch hr li lv".split(), 21),
    **dict.fromkeys("bg bh cr de ge gb ie me rs va".split(), 22),
    **dict.fromkeys("ae gi il iq om so tl".split(), 23),
    **dict.fromkeys("ad cz es md pk ro sa se sk tn vg".split(), 24),
    **dict.fromkeys("ly pt st".split(), 25),
    **dict.fromkeys("is tr".split(), 26),
    **dict.fromkeys("bi dj fr gr it mc mr sm".split(), 27),
    **dict.fromkeys("al az by do gt hn hu lb ni pl sv cy".split(), 28),
    **dict.fromkeys("br eg ps qa ua".split(), 29),
    **dict.fromkeys("jo kw mu ye".split(), 30),
    **dict.fromkeys("mt sc".split(), 31),
    "lc": 32,
    "ru": 33,
}
_IBAN_START = re.compile(r"(?<![a-z0-9])(?P<country>[a-z]{2})(?P<check>\d{2})")
_IBAN_GROUP = re.compile(r"[ -]?([a-z0-9]+)")
_IBAN_MIN_DIGITS = 8


def _ibans(folded: str) -> Iterator[tuple[int, int, str | None]]:
    """IBAN-shaped strings, with or without a valid checksum.

    The mod-97 checksum is not required: a mistyped or deliberately altered IBAN still
    asks to be paid off the platform, and the other side can fix one digit. Product codes
    are kept out by shape instead: a country with IBANs, check digits 02 to 98 (the only
    ones the standard issues), exactly that country's length, whole groups (written
    together, or split by single spaces or dashes) and at least 8 digits after the check
    digits.
    """
    for match in _IBAN_START.finditer(folded):
        length = _IBAN_LENGTHS.get(match.group("country"))
        if length is None or not 2 <= int(match.group("check")) <= 98:
            continue
        wanted, got, digits, end = length - 4, 0, 0, match.end()
        while got < wanted and (group := _IBAN_GROUP.match(folded, end)):
            got += len(group.group(1))
            digits += sum(c.isdigit() for c in group.group(1))
            end = group.end()
        if got == wanted and digits >= _IBAN_MIN_DIGITS:
            yield match.start(), end, "iban"


# Links -----------------------------------------------------------------------------------

_SCHEME_URL = re.compile(r"(?<![a-z0-9])(?:h[tx]{2}ps?|ftps?)(?::|\[:\]|\(:\))//[^\s<>\"]+")
_WWW = re.compile(rf"(?<![a-z0-9_@-])www{_DOT}{_LABEL}{_MORE_LABELS}(?P<path>/[^\s<>\"]*)?")
_DOMAIN = re.compile(
    rf"(?<![a-z0-9_@-])(?P<host>{_LABEL}{_MORE_LABELS}{_DOT}(?P<tld>{_TLD}))"
    rf"(?![a-z0-9-])(?::\d{{1,5}})?(?P<path>/[^\s<>\"]*)?"
)
_TRAILING = ".,;:!?'\")]}>"  # punctuation after a link belongs to the sentence


def _urls(folded: str, allowed: tuple[str, ...]) -> Iterator[tuple[int, int, str | None]]:
    for match in _SCHEME_URL.finditer(folded):
        url = match.group().rstrip(_TRAILING)
        rest = url.split("//", 1)[1]
        host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1].split(":")[0]
        yield match.start(), match.start() + len(url), _link_kind(host, allowed)


def _hosts(
    text: str, folded: str, origin: list[int], allowed: tuple[str, ...]
) -> Iterator[tuple[int, int, str | None]]:
    for match in _WWW.finditer(folded):
        link = match.group().rstrip(_TRAILING)
        host = re.split(r"[/?#]", link, maxsplit=1)[0]
        yield match.start(), match.start() + len(link), _link_kind(host, allowed)
    for match in _DOMAIN.finditer(folded):
        link = match.group().rstrip(_TRAILING)
        if match.group("tld") in _WORD_TLDS and not _strong_link(match, text, origin):
            continue
        yield match.start(), match.start() + len(link), _link_kind(match.group("host"), allowed)


def _strong_link(match: re.Match[str], text: str, origin: list[int]) -> bool:
    """Whether a host whose top-level domain is a word is a link rather than a sentence."""
    if (match.group("path") or "").rstrip(_TRAILING):
        return True  # t.me/name, wa.me/4479...
    dots = [dot.group() for dot in _DOT_RE.finditer(match.group("host"))]
    if any(re.search(_OPEN, dot) for dot in dots):
        return True  # "[.]" and "(dot)" are written to evade, never by accident
    if any(dot != "." for dot in dots):
        return False  # "at home . me too", "polka dot to ..."
    # "amazon.it" but not "Got it.No worries": a capital after the dot starts a sentence.
    return not _original(text, origin, match.start("tld"), match.end("tld")).istitle()


def _link_kind(host: str, allowed: tuple[str, ...]) -> str | None:
    return None if _host_allowed(host, allowed) else "link"


# Phone numbers ---------------------------------------------------------------------------

# Eight digits: a whole national number almost everywhere, longer than prices, years and
# short order numbers. A seven-digit local number without its area code goes unnoticed.
_PHONE_MIN_DIGITS = 8
_NUMBER_WORDS = "zero|one|two|three|four|five|six|seven|eight|nine"
# One piece of a number: digits (with O for 0 and l or I for 1 when among digits), digits
# as words (also run together, "oh" for zero), "double seven", or a lone "o".
_UNIT = re.compile(
    rf"(?P<repeat>(?<![a-z])(?:double|triple)[\s-]*(?:{_NUMBER_WORDS}|oh|o|\d)(?![a-z0-9]))"
    rf"|(?P<words>(?<![a-z])(?:{_NUMBER_WORDS}|oh)+(?![a-z]))"
    r"|(?P<digits>(?<![a-z0-9])(?=[oil]*[0-9])[0-9oil]++(?![a-z0-9])|[0-9]+)"
    r"|(?P<o>(?<![a-z])o(?![a-z]))"
)
_NUMBER_WORD = re.compile(rf"{_NUMBER_WORDS}|oh")
# What may stand between the pieces of one phone number. Not commas or colons: they
# separate prices ("1,250"), lists and times ("10:30"); a comma only between words
# ("zero, seven, nine").
_NUMBER_GAP = re.compile(r"[\s.\-/\\()\[\]+_*|~]{0,4}")
_WORD_GAP = re.compile(r"\s*,\s*")

# Numbers that look like digit runs but are not phone numbers, each standing alone: a time
# range directly followed by ".34" is part of something longer (for dates see _is_date).
_ALONE_BEFORE = r"(?<!\d)(?<!\d[./-])"
_ALONE_AFTER = r"(?!\d)(?![./-]\d)"
_DATE = re.compile(
    r"(?<!\d)(?:(?P<y>(?:19|20)\d\d)(?P<s1>[./-])(?P<m>\d\d?)(?P=s1)(?P<d>\d\d?)"
    r"|(?P<a>\d\d?)(?P<s2>[./-])(?P<b>\d\d?)(?P=s2)(?:(?:19|20)\d\d|\d\d)"
    r"|(?P<sa>\d\d?)/(?P<sb>\d\d?))(?!\d)"
)
_TIME = r"(?:[01]?\d|2[0-3])[:.h][0-5]\d(?:\s?[ap]\.?m\.?)?"
_TIME_RANGE = re.compile(rf"{_ALONE_BEFORE}{_TIME}\s*(?:-|to|till|until)\s*{_TIME}{_ALONE_AFTER}")
_YEAR_RANGE = re.compile(
    rf"{_ALONE_BEFORE}(?:19|20)\d\d\s*[-/]\s*(?:(?:19|20)\d\d|\d\d){_ALONE_AFTER}"
)
# Timestamps in the names of photos, which are often a message's whole body:
# IMG_20240512_103000.jpg, IMG-20240512-WA0001.jpg, Screenshot_2024-05-12-10-30-00-123.png.
_TIMESTAMP = re.compile(
    r"(?<!\d)(?:19|20)\d\d(?P<s>[-_.]?)(?:0[1-9]|1[0-2])(?P=s)(?:0[1-9]|[12]\d|3[01])"
    r"(?:[-_t ]?(?:[01]\d|2[0-3])(?P<t>[-_.:]?)[0-5]\d(?:(?P=t)[0-5]\d)?(?:[-_.]?\d{1,3})?)?"
    r"(?!\d)"
)
_CURRENCY = (
    r"(?:[£$€¥₹₽₩₺₴]|(?<![a-z])(?:usd|eur|gbp|chf|jpy|cad|aud|pln|sek|nok|dkk|czk|huf|ron"
    r"|rub|uah|inr|cny|euros?|dollars?|pounds?|bucks|quid|kr)(?![a-z]))"
)
# An amount: 1250, 1,250.00, 1.250,00, 1 250 000. Its thousands separator is one character
# used throughout; a leading zero makes it something else (a phone number).
_AMOUNT = (
    r"(?<!\d)(?P<n>(?:[1-9]\d{0,2}(?:(?P<sep>[ .,'])\d{3}(?:(?P=sep)\d{3})?)?|[1-9]\d{0,6}|0)"
    r"(?:[.,]\d\d?)?)"
)
_PRICES = (
    re.compile(rf"{_CURRENCY}\s?{_AMOUNT}"),
    re.compile(rf"{_AMOUNT}\s?{_CURRENCY}"),
)
# A price of ten million or more is more likely a phone number with a currency sign added.
_PRICE_MAX_DIGITS = 7
_NEXT_TO_DIGITS = re.compile(r"[\s.\-/()]{0,4}\d")


def _masked(folded: str, claims: list[tuple[int, int, str | None]]) -> str:
    """The folded text with what is claimed, and numbers that are no phone, blanked out."""
    chars = list(folded)
    spans = [(start, end) for start, end, _ in claims]
    spans += [m.span() for m in _DATE.finditer(folded) if _is_date(m, folded)]
    spans += [m.span() for m in _TIME_RANGE.finditer(folded)]
    spans += [m.span() for m in _YEAR_RANGE.finditer(folded)]
    spans += [m.span() for m in _TIMESTAMP.finditer(folded)]
    for pattern in _PRICES:
        spans += [m.span() for m in pattern.finditer(folded) if _is_price(m, folded)]
    for start, end in spans:
        chars[start:end] = "\x00" * (end - start)  # folding removed every \x00 of the text
    return "".join(chars)


def _is_date(match: re.Match[str], folded: str) -> bool:
    start, end = match.span()
    # Alone, or in a range of dates ("12/05-14/05"): "06.12.34.56.78" holds no date.
    after = re.match(r"([./-])(\d[\d./]*)", folded[end : end + 12])
    before = re.search(r"(\d[\d./]*)([./-])$", folded[max(0, start - 12) : start])
    neighbours = [after.group(1, 2)] if after else []
    neighbours += [before.group(2, 1)] if before else []
    own = match.group("s1") or match.group("s2") or "/"
    for joint, neighbour in neighbours:
        if joint != "-" or own == "-" or not _DATE.fullmatch(neighbour):
            return False
    if match.group("y"):
        return 1 <= int(match.group("m")) <= 12 and 1 <= int(match.group("d")) <= 31
    a, b = (int(match.group(n) or match.group(s)) for n, s in (("a", "sa"), ("b", "sb")))
    return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12  # day/month or month/day


def _is_price(match: re.Match[str], folded: str) -> bool:
    """A currency amount that is not glued to more digits (a phone number with a "$")."""
    whole = re.split(r"[.,]\d\d?$", match.group("n"))[0]
    if sum(c.isdigit() for c in whole) > _PRICE_MAX_DIGITS:
        return False
    before = folded[max(0, match.start() - 5) : match.start()]
    return not re.search(r"\d[\s.\-/()]{0,4}$", before) and not _NEXT_TO_DIGITS.match(
        folded, match.end()
    )


def _phones(masked: str) -> Iterator[tuple[int, int, str | None]]:
    """Runs of number pieces, joined by separators, with at least 8 digits in all."""
    start = end = digits = 0
    previous_is_word = False
    for unit in _UNIT.finditer(masked):
        is_word = unit.lastgroup != "digits"
        gap = masked[end : unit.start()]
        if digits and (
            _NUMBER_GAP.fullmatch(gap)
            or (previous_is_word and is_word and _WORD_GAP.fullmatch(gap))
        ):
            digits += _digit_count(unit)
        else:
            if digits >= _PHONE_MIN_DIGITS:
                yield _phone_span(masked, start, end)
            start, digits = unit.start(), _digit_count(unit)
        end, previous_is_word = unit.end(), is_word
    if digits >= _PHONE_MIN_DIGITS:
        yield _phone_span(masked, start, end)


def _digit_count(unit: re.Match[str]) -> int:
    kind = unit.lastgroup
    if kind == "repeat":
        return 2 if unit.group().startswith("double") else 3
    if kind == "words":
        return len(_NUMBER_WORD.findall(unit.group()))
    return len(unit.group()) if kind == "digits" else 1


def _phone_span(masked: str, start: int, end: int) -> tuple[int, int, str]:
    while start and masked[start - 1] in "+(":
        start -= 1  # "+44 ..." and "(020) ..." begin with their sign
    return start, end, "phone"


# Terms -----------------------------------------------------------------------------------

# What digits and symbols stand for in leetspeak: "p@yp4l", "$kr1ll".
_LEET = {"a": "4@", "e": "3", "i": "1", "l": "1", "o": "0", "s": "5$", "t": "7"}
_UNLEET = str.maketrans("013457@$", "oieastas")
_TERM_GAP = r"(?:[^\w@$]|_){0,3}"  # spaces, punctuation or symbols between the letters
_GAP_RUN = re.compile(r"((?:[^\w@$']|_)+)")
_CLAUSE_END = re.compile(r"[.,;:!?]\s")
# Short words that make two pieces a phrase rather than a split-up term: "can we chat".
_FUNCTION_WORDS = frozenset(
    """
    a i we us me my you he she it is am are be to of in on at by or an as so do go no up if
    the and for but can will our your his her its was has had not all any with via
    """.split()
)


def _terms(folded: str, terms: Collection[str]) -> Iterator[tuple[int, int, str | None]]:
    for term in terms:
        words = tuple(re.findall(r"[^\W_]+", _fold(term)[0]))
        if not words:
            continue
        letters = "".join(words)
        # A letter may be doubled ("telegramm"), within bounds that keep the search linear.
        pattern = _TERM_GAP.join(f"[{re.escape(c + _LEET.get(c, ''))}]{{1,3}}" for c in letters)
        for match in re.finditer(rf"(?<![^\W\d_]){pattern}(?![^\W\d_])", folded):
            if _split_plausibly(match.group(), words):
                yield match.start(), match.end(), "term"


def _split_plausibly(found: str, words: tuple[str, ...]) -> bool:
    """Whether a match split into pieces is the term written apart, not ordinary words.

    "w h a t s a p p", "pay pal", "we-chat" and "cash app" are the term; "can we chat"
    (a plain phrase with a short common word) and "cash. App" (a sentence boundary) are not.
    """
    split = _GAP_RUN.split(found.replace("'", ""))  # What'sApp: an apostrophe joins
    pieces, gaps = [p.translate(_UNLEET) for p in split[0::2]], split[1::2]
    as_written = _squeeze(pieces) == _squeeze(list(words))
    for left, gap, right in zip(pieces, gaps, pieces[1:], strict=False):
        if len(left) == 1 or len(right) == 1:
            continue  # letters spelt out one by one are never an accident
        if _CLAUSE_END.search(gap):
            return False
        if gap.isspace() and not as_written and {left, right} & _FUNCTION_WORDS:
            return False
    return True


def _squeeze(pieces: list[str]) -> list[str]:
    return [re.sub(r"(.)\1+", r"\1", piece) for piece in pieces]
