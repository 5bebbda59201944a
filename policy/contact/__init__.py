"""Contact details and off-platform cues in chat messages, found for the policy bot to redact.

While a transaction is open, buyer and seller must settle it on the marketplace. A message
that would move the deal elsewhere is found here, and the bot redacts or masks it:

    "mail me: jo at gmx dot de, or +44 20 7946 0958"
        -> [Finding("email", "jo at gmx dot de"), Finding("phone", "+44 20 7946 0958")]

Kinds: an email address, a phone number, a link, an IBAN, a crypto wallet address, or an
off-platform term ("paypal", "signal app"). A finding holds the original text and its span
(``text == message[start:end]``); ``mask_contact_details`` replaces the spans with a marker,
and ``find_contact_details_across`` reads a sender's consecutive messages together, so that
"0791" then "1123456" is a phone number, and reports what reaches into the newest.

Reading. People who want to get round the bot write ``j0hn (at) gmail (dot) com``, spell
digits out, space them with emoji or swap characters for look-alikes, so every detector
reads a *folded* copy of the message (folding.py, lookalikes.py): compatibility-decomposed
(NFKD: fullwidth, mathematical, circled and superscript forms become ASCII), marks and
invisible characters dropped, lower case, and what characters of other scripts and styles
stand for, from Unicode's own data: digits by their numeric value (circled, dingbat, CJK
numerals, other scripts' digits), Latin letters by their names (small capitals, letters with
a stroke, regional indicators, squared letters) and look-alike letters by Unicode's
confusables (Cyrillic, Greek, Armenian, Cherokee). A letter becomes a letter, never a digit,
so Russian and Greek text is not read as numbers. Characters spaced out one by one ("j o h n
@ g m a i l . c o m") are joined up for emails and links. The folded copy remembers which
original character each of its characters came from, so a finding reports the original. The
detectors run from the most to the least specific (URLs with a scheme, emails, other links,
wallets, IBANs, phone numbers, terms) and each ignores what an earlier one claimed: an
email's domain is not also a link, and the digits of ``wa.me/447911123456`` are not also a
phone number. A link to an allowed host is claimed without a finding, so the marketplace's
own URLs (and the ids in them) stay quiet.

What is found:
- emails: "@" plain or written " @ ", "(at)", "[at]", "(a)", "at", "arobase", "chez"; dots
  written " . ", "(dot)", "dot", "point", "punkt", "punto"; the name spaced around its dots
  ("john . smith"); big providers without an ending ("john at gmail");
- phone numbers: 8 digits or more (no upper limit: 16 may be a card number) whatever stands
  between their groups but a word: spaces and line breaks of any length, any punctuation,
  emoji, one to three letters glued between digits ("0791a112b3456"), a letter standing
  alone ("0791 a 112") or a separator's name ("06 dot 12", "point", "tiret"); digits in
  English and French words, the tens too ("seventy nine", "quatre-vingt-dix-neuf", French
  read in pairs), "oh", "double seven", words run together; O and l among digits. Six or
  seven digits count after a cue word ("call", "tel", "phone", "numéro", "portable",
  "appelle"...) or with a "+" country code, where libphonenumber finds them possible. A
  "+" or bracket in front belongs to the number;
- links: URLs with a scheme (hxxp too), "www." hosts, hosts with a known top-level domain,
  their dots written out as above;
- IBANs: a country with IBANs, check digits 02 to 98, exactly that country's length, whole
  groups, 8 digits or more; the checksum is not required (a mistyped IBAN still asks to be
  paid off the platform);
- wallets: Bitcoin (legacy and bech32), Ethereum (0x and 40 hex digits) and Tron (T and 33)
  addresses; the case-sensitive ones matched with their case, and only mixing upper and
  lower case as real ones do;
- terms: each term as a whole word, spaced out, in leetspeak, with doubled letters; a handle
  or id next to it belongs to it ("insta: @jo_b", "skype id: jo.b", "@jo_b on ig"). Terms
  that are also ordinary words (terms.CONTEXTUAL: signal, line, wise, messenger, snap, ig,
  fb) count only where they name the app: after a contact or payment phrase ("add me on",
  "via", "pay with"; for "line" a contact verb only), before a word such as "app", "id",
  "account" or "transfer", with a handle, or spelled out.

Ordinary chat must stay quiet, so before digits are counted the ordinary numbers are set
aside (numbers.py): prices (with a currency or cents, alone or in a list of prices), dates
and date ranges, times and time ranges, years and lists of years, photo timestamps, sizes
(120 x 80 x 45 cm, 1920x1080), ZIP+4 codes, ISBNs with a valid checksum, and order,
tracking and reference numbers of up to seven digits named as such ("order #1234567",
"commande n° 123456"). What is set aside stops counting but does not end a number, so a
date between the halves of one does not hide it. Tests: the corpus under
``tests/unit/corpus/`` (ordinary chat in English, French and other scripts, and evasions).

Deliberately not detected, because catching them would flag ordinary chat:
- a term glued to other letters ("addmeonwhatsapp"): "revolution" and "gazelle" must not
  be Revolut and Zelle; "we chat" as two plain words; an ordinary word without a context
  that names the app ("my ig is bob", where the name does not look like a handle);
- digit groups with a word between them ("0791 banana 112 3456"): any word of two letters
  or more that is not glued between digits ends a number, or every sentence with a few
  numbers would be one;
- six or seven digits without a cue word or a "+" country code (a local number without its
  area code), and numbers in words in other languages, or with hundreds ("eight hundred");
- a number that takes an ordinary number's shape: a valid date, a list of years or of
  amounts with cents ("612.34, 567.89"), a two-part size ("7911 x 1234"), a ZIP+4, up to
  seven digits named as an order number;
- letters that only look like digits (Cyrillic ze for 3): Russian text is full of them; and
  letters Unicode's confusables do not list as look-alikes of Latin ones (Greek small eta);
- an email without a domain-shaped part ("john at mycompany"), one with "at" and "dot" run
  into the letters or a domain dotted letter by letter ("g.m.a.i.l . c.o.m"), and a link
  whose top-level domain is an English, French or German word ("me", "it", "de", "la"...)
  written with a spaced or word dot, or after a capitalised sentence start ("Got it.No
  worries"): these count with a scheme, "www.", a path or a bracketed dot;
- user handles alone ("@name"), hosts without a known top-level domain, and wallet
  addresses split up, in one case or of other coins.
And deliberately detected although ordinary chat can produce it: any run of 8 or more
digits that is not an ordinary number, including long order, tracking and serial numbers
and lists of numbers ("sizes 38, 40, 42, 44").

Cost. Every pattern is linear (bounded repeats, possessive where alternatives could meet)
and begins with a character, not a look-behind, so that the search skips in C every
position where no match can begin. Python work is per candidate, and each detector examines
at most MAX_CANDIDATES (128): past that, the rest of the message from there is one finding
of that kind (so many candidates are abuse, and decoys must not hide what follows them).
Ordinary numbers are recognised around the first 8,192 characters of candidate numbers;
past that, digits count as they stand. A 64 KiB message of any shape tried takes at most
about 30 ms on the development machine (tests/unit/test_contact_adversarial.py has them).
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from .domains import host_key, hosts, urls
from .emails import emails
from .folding import fold_text, original_span, squeeze
from .ibans import ibans
from .limits import MASK_BUDGET, MAX_CANDIDATES
from .phones import masked, phones
from .terms import terms_found
from .wallets import wallets

KINDS = ("email", "phone", "link", "iban", "wallet", "term")

# Messaging apps, social networks and payment services that take a deal off the platform.
# Those that are also ordinary words ("signal", "line", "wise", "messenger", "snap") count
# only where the text names the app (see terms.CONTEXTUAL).
DEFAULT_TERMS = (
    "whatsapp",
    "telegram",
    "viber",
    "wechat",
    "skype",
    "snapchat",
    "snap",
    "kakaotalk",
    "signal",
    "threema",
    "line",
    "imessage",
    "facetime",
    "instagram",
    "insta",
    "ig",
    "facebook",
    "fb",
    "messenger",
    "tiktok",
    "discord",
    "paypal",
    "venmo",
    "zelle",
    "western union",
    "moneygram",
    "cash app",
    "revolut",
    "wise",
    "skrill",
    "payoneer",
    "neteller",
    "bizum",
    "twint",
    "wero",
    "paylib",
    "bitcoin",
    "ethereum",
    "usdt",
    "binance",
    "coinbase",
)

# What separates the messages judged together by find_contact_details_across.
MESSAGE_SEPARATOR = "\n"
# How much of the earlier messages find_contact_details_across reads back.
ACROSS_CONTEXT = 2000


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # one of KINDS
    text: str  # the matched piece of the original text (for tests and admin review only)
    start: int = field(compare=False, default=0)  # text == original[start:end]
    end: int = field(compare=False, default=0)


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
    folded = fold_text(text)
    allowed = tuple(host for host in map(host_key, allowed_hosts) if host)
    claims: list[tuple[int, int, str | None]] = []  # (start, end, kind); None claims quietly
    # Emails and links are read with characters spaced out one by one joined up.
    spaced = squeeze(folded.text)
    view, back = spaced if spaced else (folded.text, None)
    view_origin = list(map(folded.origin.__getitem__, back)) if back else folded.origin
    _claim(claims, _mapped(urls(view, allowed), back))  # first: "https://a.com@b.io" is no email
    _claim(claims, _mapped(emails(view, allowed), back))
    _claim(claims, _mapped(hosts(text, view, view_origin, allowed), back))
    _claim(claims, wallets(folded.cased, folded.text))
    _claim(claims, ibans(folded.text))
    _claim(claims, phones(masked(folded.text, claims)))
    _claim(claims, terms_found(folded.text, terms))
    findings = []
    for start, end, kind in claims:
        if kind is not None:
            first, last = original_span(folded.origin, start, end)
            findings.append(Finding(kind, text[first:last], first, last))
    return findings


def find_contact_details_across(
    texts: Sequence[str], allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> list[Finding]:
    """What the newest of a sender's consecutive messages adds, read together with the
    earlier ones: "0791" then "1123456" is a phone number.

    ``texts`` are the messages, oldest first and the newest last. They are judged as one
    text, joined by a line break (the earlier ones read back at most ``ACROSS_CONTEXT``
    characters), and the findings that reach into the newest message are returned, their
    ``start`` and ``end`` (and ``text``) clipped to it and relative to it. A finding wholly
    inside earlier messages is not returned: it was judged then.
    """
    if not texts:
        return []
    newest = texts[-1]
    earlier = MESSAGE_SEPARATOR.join(texts[:-1])
    if len(earlier) > ACROSS_CONTEXT:
        earlier = earlier[-ACROSS_CONTEXT:]
        cut = next((i for i, c in enumerate(earlier) if c.isspace()), len(earlier))
        earlier = earlier[cut:]  # never half a word
    offset = len(earlier) + len(MESSAGE_SEPARATOR) if len(texts) > 1 else 0
    joined = earlier + MESSAGE_SEPARATOR + newest if len(texts) > 1 else newest
    findings = []
    for finding in find_contact_details(joined, allowed_hosts, terms):
        if finding.end <= offset:
            continue
        start, end = max(finding.start - offset, 0), finding.end - offset
        findings.append(Finding(finding.kind, newest[start:end], start, end))
    return findings


def contains_contact_info(
    text: str, allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> bool:
    """Whether `text` has anything ``find_contact_details`` would find."""
    return bool(find_contact_details(text, allowed_hosts, terms))


def mask_contact_details(
    text: str,
    allowed_hosts: Collection[str] = (),
    terms: Collection[str] = (),
    marker: str = "[contact details hidden]",
) -> str:
    """`text` with every contact detail replaced by `marker`, the rest unchanged."""
    pieces, done = [], 0
    for finding in find_contact_details(text, allowed_hosts, terms):
        pieces += [text[done : finding.start], marker]
        done = finding.end
    pieces.append(text[done:])
    return "".join(pieces)


def _mapped(
    found: Iterable[tuple[int, int, str | None]], back: list[int] | None
) -> Iterable[tuple[int, int, str | None]]:
    """Spans found in the joined-up view, as spans of the folded text."""
    if back is None:
        return found
    return ((back[start], back[end - 1] + 1, kind) for start, end, kind in found)


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


__all__ = [
    "DEFAULT_TERMS",
    "KINDS",
    "MASK_BUDGET",
    "MAX_CANDIDATES",
    "Finding",
    "contains_contact_info",
    "find_contact_details",
    "find_contact_details_across",
    "mask_contact_details",
]
