"""Emails and links: hosts written plainly or disguised ("gmail (dot) com"), and which hosts
are the marketplace's own."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .folding import fold, original

# Shared pieces of domains: dots, written plainly or not -----------------------------------

OPEN, CLOSE = r"[(\[{<]", r"[)\]}>]"
# A dot: ".", " . ", "[.]", "(dot)", " dot ". A "." followed by a space is a sentence end
# ("done. thanks"), unless a space precedes it too ("example . com").
DOT = rf"(?:\s*{OPEN}\s*(?:\.|dot)\s*{CLOSE}\s*|\s+dot\s+|\s+\.\s+|\s*\.(?!\s))"
DOT_RE = re.compile(DOT)
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# Labels after the first. Bounded, so that "a.a.a.a..." costs linear time, not quadratic.
MORE_LABELS = rf"(?:{DOT}{LABEL}){{0,8}}"

# Common generic and country top-level domains: enough to recognise a host without a
# network lookup. Left out: those that are also common file extensions in chat (zip, mov,
# md, py, sh, rs, ps, ai, mk), so that "photos.zip" is not a link.
TLDS = frozenset(
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
WORD_TLDS = frozenset("me to in it is at be no us my by am as so id top live chat email".split())
TLD = "(?:" + "|".join(sorted(TLDS, key=len, reverse=True)) + ")"

# Mail providers known well enough that "john at gmail" is an address without a ".com".
PROVIDERS = "(?:gmail|googlemail|hotmail|yahoo|outlook|icloud|protonmail|gmx|yandex|aol)"


def host_key(host: str) -> str:
    """An allowed host as given in configuration, as links are compared with it."""
    host = fold(host.strip())[0]
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host)
    host = re.split(r"[/?#:]", host, maxsplit=1)[0]
    return host.removeprefix("*.").strip(".")


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    host = re.sub(r"\s+", "", DOT_RE.sub(".", host)).strip(".")
    return any(host == a or host.endswith("." + a) for a in allowed)


# Emails ----------------------------------------------------------------------------------

_LOCAL_BEFORE = r"(?<![a-z0-9._%+'-])"
_EMAIL = re.compile(
    rf"{_LOCAL_BEFORE}[a-z0-9._%+-]+@{LABEL}(?:\.{LABEL}){{0,8}}\.[a-z]{{2,24}}(?![a-z0-9-])"
)
# "@" written as "(at)", "[at]", "{at}", " @ " or a plain word " at ".
_AT = rf"(?:\s*{OPEN}\s*(?:at|@)\s*{CLOSE}\s*|\s*@\s*|\s+at\s+)"
_WRITTEN_EMAIL = re.compile(
    rf"{_LOCAL_BEFORE}(?P<local>[a-z0-9][a-z0-9._%+-]*)(?P<at>{_AT})"
    rf"(?P<domain>{LABEL}{MORE_LABELS}{DOT}{TLD}|{PROVIDERS})(?![a-z0-9-])"
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


def emails(folded: str, allowed: tuple[str, ...]) -> Iterator[tuple[int, int, str | None]]:
    for match in _EMAIL.finditer(folded):
        yield match.start(), match.end(), "email"
    for match in _WRITTEN_EMAIL.finditer(folded):
        if match.group("at").strip() == "at":
            # A plain "at" is English first: an address only when it cannot be a place.
            if match.group("local") in _NOT_MAILBOXES:
                continue
            if host_allowed(match.group("domain"), allowed):
                continue  # "find us at example.com": a link to the marketplace itself
        yield match.start(), match.end(), "email"


# Links -----------------------------------------------------------------------------------

_SCHEME_URL = re.compile(r"(?<![a-z0-9])(?:h[tx]{2}ps?|ftps?)(?::|\[:\]|\(:\))//[^\s<>\"]+")
_WWW = re.compile(rf"(?<![a-z0-9_@-])www{DOT}{LABEL}{MORE_LABELS}(?P<path>/[^\s<>\"]*)?")
_DOMAIN = re.compile(
    rf"(?<![a-z0-9_@-])(?P<host>{LABEL}{MORE_LABELS}{DOT}(?P<tld>{TLD}))"
    rf"(?![a-z0-9-])(?::\d{{1,5}})?(?P<path>/[^\s<>\"]*)?"
)
_TRAILING = ".,;:!?'\")]}>"  # punctuation after a link belongs to the sentence


def urls(folded: str, allowed: tuple[str, ...]) -> Iterator[tuple[int, int, str | None]]:
    for match in _SCHEME_URL.finditer(folded):
        url = match.group().rstrip(_TRAILING)
        rest = url.split("//", 1)[1]
        host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1].split(":")[0]
        yield match.start(), match.start() + len(url), _link_kind(host, allowed)


def hosts(
    text: str, folded: str, origin: list[int], allowed: tuple[str, ...]
) -> Iterator[tuple[int, int, str | None]]:
    for match in _WWW.finditer(folded):
        link = match.group().rstrip(_TRAILING)
        host = re.split(r"[/?#]", link, maxsplit=1)[0]
        yield match.start(), match.start() + len(link), _link_kind(host, allowed)
    for match in _DOMAIN.finditer(folded):
        link = match.group().rstrip(_TRAILING)
        if match.group("tld") in WORD_TLDS and not _strong_link(match, text, origin):
            continue
        yield match.start(), match.start() + len(link), _link_kind(match.group("host"), allowed)


def _strong_link(match: re.Match[str], text: str, origin: list[int]) -> bool:
    """Whether a host whose top-level domain is a word is a link rather than a sentence."""
    if (match.group("path") or "").rstrip(_TRAILING):
        return True  # t.me/name, wa.me/4479...
    dots = [dot.group() for dot in DOT_RE.finditer(match.group("host"))]
    if any(re.search(OPEN, dot) for dot in dots):
        return True  # "[.]" and "(dot)" are written to evade, never by accident
    if any(dot != "." for dot in dots):
        return False  # "at home . me too", "polka dot to ..."
    # "amazon.it" but not "Got it.No worries": a capital after the dot starts a sentence.
    return not original(text, origin, match.start("tld"), match.end("tld")).istitle()


def _link_kind(host: str, allowed: tuple[str, ...]) -> str | None:
    return None if host_allowed(host, allowed) else "link"
