"""Contact details and off-platform cues in chat messages, found for the policy bot to redact.

While a transaction is open, buyer and seller must settle it on the marketplace. A message
that would move the deal elsewhere is found here, and the bot redacts or masks it:

    "mail me: jo at gmx dot de, or +44 20 7946 0958"
        -> [Finding("email", "jo at gmx dot de"), Finding("phone", "+44 20 7946 0958")]

Kinds: an email address, a phone number, a link, an IBAN, a crypto wallet address, or an
off-platform term ("paypal", "signal app"). A finding holds the original text and its span
(``text == message[start:end]``); ``mask_contact_details`` replaces the spans with a marker,
and ``find_contact_details_across`` reads a sender's consecutive messages together (see
across.py), so that "0791" then "1123456" is a phone number, and reports what reaches into
the newest.

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
detectors (detect.py) run from the most to the least specific (URLs with a scheme, emails,
other links, wallets, IBANs, phone numbers, terms) and each ignores what an earlier one
claimed: an email's domain is not also a link, and the digits of ``wa.me/447911123456`` are
not also a phone number. A link to an allowed host is claimed without a finding, so the
marketplace's own URLs (and the ids in them) stay quiet.

What is found:
- emails: "@" plain or written " @ ", "(at)", "[at]", "(a)", "at", "arobase", "chez", or
  between underscores or hyphens ("bob_seller_at_gmail_dot_com"); dots written " . ",
  "(dot)", "dot", "point", "punkt", "punto"; the name spaced around its dots ("john .
  smith"); big providers without their ending or with it glued on ("john at gmail",
  "bob@gmailcom"); a big provider named with a mailbox-like name, one with a dot, an
  underscore, a hyphen, a plus or a digit ("my gmail is bob.seller", "hotmail: bob_seller");
- phone numbers: 8 digits or more (no upper limit: 16 may be a card number) whatever stands
  between their groups but a word: spaces and line breaks of any length, any punctuation,
  emoji, up to eight letters glued between digits ("0791a112b3456", "07911abcd123456":
  prose never glues a word to digits on both sides), a letter standing alone ("0791 a
  112") or a separator's name ("06 dot 12", "point", "tiret"); digits in English and French
  words, the tens too ("seventy nine", "quatre-vingt-dix-neuf", French read in pairs), "oh",
  "double seven", words run together; O and l among digits. Six or seven digits count after
  a cue word ("call", "tel", "phone", "numéro", "portable", "appelle"...) or with a "+"
  country code, where libphonenumber finds them possible. A "+" or bracket in front belongs
  to the number. Split across messages, a number needs more (across.py): libphonenumber
  must find it valid;
- links: URLs with a scheme (hxxp too), "www." hosts, hosts with a known top-level domain,
  their dots written out as above; well-known link shorteners and messaging links whatever
  their ending ("goo.gl/x", "is.gd", "amzn.to", "t.me": domains.SHORTENERS);
- IBANs: a country with IBANs, check digits 02 to 98, exactly that country's length, whole
  groups, 8 digits or more; the checksum is not required (a mistyped IBAN still asks to be
  paid off the platform);
- wallets: Bitcoin and Litecoin (legacy and bech32), Ethereum (0x and 40 hex digits), Tron,
  Dogecoin, XRP and Monero addresses by their first character and length; the case-sensitive
  ones matched with their case, and only mixing upper and lower case and holding a digit as
  real ones do. Solana's (base58, 32 to 44 characters, no prefix of its own) after a word
  about paying or a wallet ("sol", "wallet", "send", "pay"...) just before;
- terms: each term as a whole word, spaced out, in leetspeak, with doubled letters, or one
  edit away from a term of seven letters or more ("whatsap", "watsapp", "telegarm") unless
  that is a word of its own ("finance", "discard", "message": misspellings.py); a handle or
  id next to it belongs to it ("insta: @jo_b", "skype id: jo.b", "@jo_b on ig", "ig:
  bob.seller", "my skype is bobseller"). Terms that are also ordinary words (terms.CONTEXTUAL:
  signal, line, wise, messenger, snap, ig, fb) count only where they name the app: after a
  contact or payment phrase ("add me on", "via", "pay with"; for "line" a contact verb only),
  before a word such as "app", "id", "account" or "transfer", with a handle or a handle-like
  name after a colon or "my ... is" ("my signal is bob.42"), after "ig", "fb" or "tg" even
  without one ("tg bob_seller"), or spelled out (not a two-letter one: "1g" is a gram).
  Configuring "telegram" also looks for "tg", and "whatsapp" for "whatsup", both only in
  such a context ("add me on tg", "whatsup me"): "tg" is also "thank god" and French for
  "shut up", "whatsup" is "what's up" (terms.ALIASES).

Ordinary chat must stay quiet, so before digits are counted the ordinary numbers are set
aside (numbers.py): prices (with a currency or cents, alone or in a list of prices), dates
and date ranges, times and time ranges, years and lists of years, photo timestamps, sizes
(120 x 80 x 45 cm, 1920x1080), quantities with a unit, alone or after a year ("2018, 45 000
miles", "1 200 km", "2 500 g", "85%"), decimal coordinates ("48.8584, 2.2945"), ZIP+4
codes, ISBNs with a valid checksum, and order, tracking and reference numbers of up to seven
digits named as such ("order #1234567", "commande n° 123456"). What is set aside stops
counting but does not end a number, so a date between the halves of one does not hide it;
and only what stands alone is set aside, so a unit after a number ("07911 123456 km") hides
nothing. Tests: the corpus under ``tests/unit/corpus/`` (ordinary chat in English, French
and other scripts, and evasions), and tests/unit/test_contact_redteam.py.

Deliberately not detected, because catching them would flag ordinary chat:
- a term glued to other letters ("addmeonwhatsapp"): "revolution" and "gazelle" must not
  be Revolut and Zelle; "we chat" as two plain words; an ordinary word without a context
  that names the app, or followed by a plain name rather than a handle-like one: "my ig is
  bob", "my signal is bobseller" ("my signal is terrible"), "my line is bobseller" ("my
  line is busy"), "tg bobseller" and "ig bobseller" ("tg finally sold it", "ig tomorrow":
  "I guess"), "my gmail is bobseller" ("my gmail is full"); telling a name from an
  adjective needs a dictionary, and Signal's own usernames end with digits ("bob.42");
- a term misspelt by more than one edit, a term of fewer than seven letters misspelt ("skipe":
  one edit from a short word is too many ordinary words), and the misspellings that are
  words of their own (misspellings._WORDS, from the English, French, German, Spanish and
  Italian word lists);
- digit groups with a word between them ("0791 banana 112 3456"): any word of two letters
  or more that is not glued between digits ends a number, or every sentence with a few
  numbers would be one;
- six or seven digits without a cue word or a "+" country code (a local number without its
  area code), and numbers in words in other languages, or with hundreds ("eight hundred");
- across messages, a number libphonenumber does not find valid: one of a country without a
  trunk prefix (Spain, Italy's mobiles, Poland: "612 345" then "678") without its "+"
  country code or a cue word; numbers with a word inside a message between their groups;
- a number that takes an ordinary number's shape: a valid date, a list of years or of
  amounts with cents ("612.34, 567.89"), a two-part size ("7911 x 1234"), a ZIP+4, decimal
  coordinates, up to seven digits named as an order number;
- letters that only look like digits (Cyrillic ze for 3): Russian text is full of them; and
  letters Unicode's confusables do not list as look-alikes of Latin ones (Greek small eta);
- an email without a domain-shaped part ("john at mycompany"), one with "at" and "dot" run
  into the letters or a domain dotted letter by letter ("g.m.a.i.l . c.o.m"), and a link
  whose top-level domain is an English, French or German word ("me", "it", "de", "la"...)
  written with a spaced or word dot, or after a capitalised sentence start ("Got it.No
  worries"): these count with a scheme, "www.", a path or a bracketed dot;
- user handles alone ("@name"), hosts without a known top-level domain (but shorteners),
  wallet addresses split up, in one case, a Solana address with no cue before it (any
  identifier of that length), and addresses of other coins.
And deliberately detected although ordinary chat can produce it: any run of 8 or more
digits that is not an ordinary number, including long order, tracking and serial numbers
and lists of numbers ("sizes 38, 40, 42, 44"); a term named in a refusal ("my telegram? I
don't use it": no rule tells it from a cue without reading the sentence); a shortener's
host in a sentence ("is.gd a site?").

Cost. Every pattern is linear (bounded repeats, possessive where alternatives could meet)
and begins with a character, not a look-behind, so that the search skips in C every
position where no match can begin. Python work is per candidate, and each detector examines
at most MAX_CANDIDATES (128): past that, the rest of the message from there is one finding
of that kind (so many candidates are abuse, and decoys must not hide what follows them).
Ordinary numbers are recognised around the first 8,192 characters of candidate numbers;
past that, digits count as they stand. Misspelt terms are the words of the message looked up
in a set of each long term's one-edit variants (made once per list of terms). Reading
messages together judges the newest with the earlier ones' last 2,000 characters, and a
number split across messages is looked for in at most 2,000 characters of earlier messages
and the newest's first 256, with at most 64 libphonenumber look-ups. A 64 KiB message of any
shape tried takes at most about 30 ms on the development machine, alone or read with the
earlier ones (tests/unit/test_contact_adversarial.py has them).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from .across import ACROSS_CONTEXT, MESSAGE_SEPARATOR, find_across
from .detect import Finding, find
from .limits import MASK_BUDGET, MAX_CANDIDATES

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


def find_contact_details(
    text: str, allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> list[Finding]:
    """Every contact detail or off-platform cue in `text`, in order of appearance.

    ``allowed_hosts`` are hosts whose links are fine (a host allows its subdomains);
    ``terms`` are the off-platform words to look for, such as ``DEFAULT_TERMS``.
    """
    return find(text, allowed_hosts, terms)


def find_contact_details_across(
    texts: Sequence[str], allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> list[Finding]:
    """What the newest of a sender's consecutive messages adds, read together with the
    earlier ones: "0791" then "1123456" is a phone number.

    ``texts`` are the messages, oldest first and the newest last. They are judged joined by
    a line break (the earlier ones read back at most ``ACROSS_CONTEXT`` characters), phone
    numbers apart: one split across messages must be a valid number (see across.py). The
    findings that reach into the newest message are returned, their ``start`` and ``end``
    (and ``text``) clipped to it and relative to it. A finding wholly inside earlier
    messages is not returned: it was judged then.
    """
    return find_across(texts, allowed_hosts, terms)


def contains_contact_info(
    text: str, allowed_hosts: Collection[str] = (), terms: Collection[str] = ()
) -> bool:
    """Whether `text` has anything ``find_contact_details`` would find."""
    return bool(find(text, allowed_hosts, terms, stop_early=True))


def mask_contact_details(
    text: str,
    allowed_hosts: Collection[str] = (),
    terms: Collection[str] = (),
    marker: str = "[contact details hidden]",
) -> str:
    """`text` with every contact detail replaced by `marker`, the rest unchanged."""
    return replace_findings(text, find_contact_details(text, allowed_hosts, terms), marker)


def replace_findings(text: str, findings: Sequence[Finding], marker: str) -> str:
    """`text` with each of `findings` (of `text`, in order, none overlapping, as found)
    replaced by `marker`."""
    pieces, done = [], 0
    for finding in findings:
        pieces += [text[done : finding.start], marker]
        done = finding.end
    pieces.append(text[done:])
    return "".join(pieces)


__all__ = [
    "ACROSS_CONTEXT",
    "DEFAULT_TERMS",
    "KINDS",
    "MASK_BUDGET",
    "MAX_CANDIDATES",
    "MESSAGE_SEPARATOR",
    "Finding",
    "contains_contact_info",
    "find_contact_details",
    "find_contact_details_across",
    "mask_contact_details",
    "replace_findings",
]
