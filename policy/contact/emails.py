"""Emails: "john@gmail.com", and written out: "john (at) gmail (dot) com", "john . smith @
gmail . com", "jean arobase orange point fr", "bob_seller_at_gmail_dot_com"; a provider with
its ending glued on ("bob@gmailcom"), or named with a mailbox-like name ("my gmail is
bob.seller")."""

from __future__ import annotations

import re

from .domains import (
    CLOSE,
    DOT,
    LABEL,
    MORE_LABELS,
    PROVIDERS,
    TLD,
    WORD_TLDS,
    Found,
    host_allowed,
)
from .limits import MAX_CANDIDATES

# The "@", plain or written out ("@", " @ ", "(at)", "[at]", "(a)", "arobase", or the plain
# words " at " and " chez "), and the domain after it: after a plain "@" any top-level
# domain, after a written-out one a known one, or a known mail provider ("john at gmail").
# The pattern begins at the @ itself (the "@", a bracket, the "a" of "at", the "c" of
# "chez"), so that the search skips in C every position where none can be; the spaces and
# the name before it are read backwards, in Python, for the few that match.
_AT_WORDS = "(?:at|@|a|arobase|chez)"
_PLAIN_DOMAIN = rf"{LABEL}(?:\.{LABEL}){{0,8}}\.[a-z]{{2,24}}(?![a-z0-9-])"
# A mail provider, its ending glued on or left out: "gmail", "gmailcom", "hotmailcouk".
_PROVIDER = rf"{PROVIDERS}(?:{TLD}){{0,2}}"
_WRITTEN_DOMAIN = rf"(?:{LABEL}{MORE_LABELS}{DOT}{TLD}|{_PROVIDER})(?![a-z0-9-])"
# "bob_seller_at_gmail_dot_com", "bob-seller-at-gmail-dot-com": at and dot between
# underscores or hyphens, the name run into them.
_GLUED_DOT = "[_-]dot[_-]"
_GLUED_DOMAIN = (
    rf"(?:{PROVIDERS}(?:{_GLUED_DOT}{TLD}){{0,2}}"
    rf"|[a-z0-9]{{1,40}}(?:{_GLUED_DOT}[a-z0-9]{{1,40}}){{0,3}}{_GLUED_DOT}{TLD})(?![a-z0-9])"
)
_ADDRESS = re.compile(
    rf"@(?:(?<=[a-z0-9._%+-]@)\s*(?P<plain>{_PLAIN_DOMAIN}|(?=[a-z0-9-]+[\s(\[{{<])"
    rf"{_WRITTEN_DOMAIN}|{_PROVIDER}(?![a-z0-9-]))"
    rf"|(?<=\s@)\s*(?P<spaced>{_WRITTEN_DOMAIN}))"
    + "".join(
        rf"|{re.escape(bracket)}\s*{_AT_WORDS}\s*{CLOSE}\s*(?P<bracketed{i}>{_WRITTEN_DOMAIN})"
        for i, bracket in enumerate("([{<")
    )
    + rf"|a(?<=\sa)(?P<at>t|robase)\s+(?P<after_at>{_WRITTEN_DOMAIN})"
    rf"|c(?<=\sc)hez\s+(?P<chez>{_WRITTEN_DOMAIN})"
    rf"|_(?<=[a-z0-9]_)at[_-](?P<glued>{_GLUED_DOMAIN})"
    rf"|-(?<=[a-z0-9]-)at[_-](?P<hyphenated>{_GLUED_DOMAIN})"
)
_DOMAINS = (
    "plain",
    "spaced",
    *(f"bracketed{i}" for i in range(4)),
    "after_at",
    "chez",
    "glued",
    "hyphenated",
)
# A mail provider named with a mailbox-like name (a dot, an underscore, a hyphen, a plus or
# a digit in it, as "my ig is jo_b" for a handle): "my gmail is bob.seller", "hotmail:
# bob_seller". A plain word after it ("my gmail is full") is no address.
_NAMED = re.compile(
    rf"{PROVIDERS}(?:\s+(?:address|adress|adresse|account|compte|id|mail|email))?"
    r"\s*(?:is|:|=|c'est|est|->)\s*(?P<name>(?=[a-z]*[._%+0-9-])"
    r"[a-z][a-z0-9._%+-]{2,62}[a-z0-9])(?![a-z0-9@._%+-])"
)
# The name before the @, read backwards: "john.smith", and spaced out around its dots
# ("john . smith", "john dot smith") when the @ is written out.
_NAME_BACK = 160
_PLAIN_NAME = re.compile(r"[a-z0-9._%+-]{1,64}")
_SPACED_DOT = r"(?:\s+\.\s+|\s+(?:tod|tniop|tknup|otnup)\s+)"  # dot, point, punkt, punto
_WRITTEN_NAME = re.compile(
    rf"[a-z0-9._%+-]{{0,63}}[a-z0-9](?:{_SPACED_DOT}[a-z0-9._%+-]{{0,63}}[a-z0-9]){{0,4}}"
)
_NAME_BEFORE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789._%+'-")
# Mail providers whose domain needs its ending: "jean chez orange point fr".
_MORE_PROVIDERS = (
    "orange wanadoo free sfr laposte neuf bbox numericable aliceadsl club-internet live msn "
    "web t-online freenet proton tutanota zoho mail rambler libero virgilio seznam"
).split()
_PROVIDER_NAMES = PROVIDERS[3:-1].split("|")
_POINT = re.compile(r"\s(?:point|punkt|punto)\s")
_DOT_RE = re.compile(DOT)
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


def emails(folded: str, allowed: tuple[str, ...]) -> Found:
    for examined, address in enumerate(_ADDRESS.finditer(folded)):
        if examined == MAX_CANDIDATES:
            yield address.start(), len(folded), "email"  # past that, the rest is one finding
            return
        plain = address.group("plain") or address.group("glued") or address.group("hyphenated")
        domain = next(d for d in address.group(*_DOMAINS) if d is not None)
        word = "chez" if address.group("chez") else {"t": "at"}.get(address.group("at") or "")
        back = folded[max(0, address.start() - _NAME_BACK) : address.start()][::-1]
        spaces = 0 if plain else len(back) - len(back.lstrip())  # "john @ gmail . com"
        name = (_PLAIN_NAME if plain else _WRITTEN_NAME).match(back, spaces)
        if name is None:
            continue
        start = address.start() - name.end()
        if start and folded[start - 1] in _NAME_BEFORE:
            continue  # "I'm at ...": the name is cut from a longer word
        local = folded[start : address.start() - spaces]
        if not any(c.isalnum() for c in local):
            continue  # "_at_gmail" alone: no name
        if plain or _plausible(local, word, domain, allowed):
            yield start, address.end(), "email"
    if any(provider in folded for provider in _PROVIDER_NAMES):
        for examined, named in enumerate(_NAMED.finditer(folded)):
            if examined == MAX_CANDIDATES:
                yield named.start(), len(folded), "email"
                return
            if not named.start() or not folded[named.start() - 1].isalnum():
                yield named.start(), named.end(), "email"


def _plausible(local: str, word: str | None, domain: str, allowed: tuple[str, ...]) -> bool:
    """Whether a written-out address is one, rather than a sentence with "at" or "chez"."""
    labels = _DOT_RE.split(domain)
    known = re.fullmatch(_PROVIDER, labels[0]) is not None or labels[0] in _MORE_PROVIDERS
    if _POINT.search(domain) and labels[-1] in WORD_TLDS and not known:
        return False  # "... point de vue", "au point de rendez-vous"
    if word == "at":
        # A plain "at" is English first: an address only when it cannot be a place.
        if local in _NOT_MAILBOXES:
            return False
        if host_allowed(domain, allowed):
            return False  # "find us at example.com": a link to the marketplace itself
    if word == "chez":
        # "chez" is French for "at someone's place": only a mailbox-like name or a mail
        # provider makes it an address ("jean.dupont chez free point fr").
        return known or re.search(r"[0-9._%+-]|\s", local) is not None
    return True
