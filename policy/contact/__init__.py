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
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from .domains import emails, host_key, hosts, urls
from .folding import fold, original
from .ibans import ibans
from .phones import masked, phones
from .terms import terms_found

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
    folded, origin = fold(text)
    allowed = tuple(host for host in map(host_key, allowed_hosts) if host)
    claims: list[tuple[int, int, str | None]] = []  # (start, end, kind); None claims quietly
    _claim(claims, urls(folded, allowed))  # first: "https://a.com@b.io" is no email
    _claim(claims, emails(folded, allowed))
    _claim(claims, hosts(text, folded, origin, allowed))
    _claim(claims, ibans(folded))
    _claim(claims, phones(masked(folded, claims)))
    _claim(claims, terms_found(folded, terms))
    return [
        Finding(kind, original(text, origin, start, end))
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
