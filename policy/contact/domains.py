"""Links: hosts written plainly or disguised ("evil (dot) com", "evil point fr"), link
shorteners whatever their ending ("goo.gl/x"), and which hosts are the marketplace's own.
Also the pieces of domains that emails share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence

from .folding import fold, original
from .limits import MAX_CANDIDATES

# Shared pieces of domains: dots, written plainly or not -----------------------------------

OPEN, CLOSE = r"[(\[{<]", r"[)\]}>]"
# A dot written as a word: English, French, German, Spanish and Italian.
DOT_WORD = r"(?:dot|point|punkt|punto)"
# A dot: ".", " . ", "[.]", "(dot)", " dot ", " point ". A "." followed by a space is a
# sentence end ("done. thanks"), unless a space precedes it too ("example . com").
# (The look-ahead makes a failing attempt cost one test instead of four.)
DOT = (
    rf"(?=[\s.(\[{{<])(?:\s*{OPEN}\s*(?:\.|{DOT_WORD})\s*{CLOSE}\s*|\s+{DOT_WORD}\s+"
    r"|\s+\.\s+|\s*\.(?!\s))"
)
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
# Top-level domains that are English, French or German words, which a sentence can produce
# by accident ("I'm at home . Me too", "Got it.No worries", "au point de rendez-vous"): they
# need more evidence, see _strong_link.
WORD_TLDS = frozenset(
    """
    me to in it is at be no us my by am as so id top live chat email
    de la es se ma ca il sa lu li
    """.split()
)


def trie(words: Iterable[str]) -> str:
    """An alternation of words that shares their beginnings ("c(?:om|o|h)"), which the
    regular expression engine tries far faster than a flat list; longest first."""
    by_first: dict[str, list[str]] = {}
    for word in words:
        by_first.setdefault(word[:1], []).append(word[1:])
    branches = []
    for first, rests in sorted(by_first.items()):
        if not first:
            continue
        longer = [rest for rest in rests if rest]
        inner = trie(longer) if longer else ""
        optional = "" in rests
        if inner:
            branches.append(f"{re.escape(first)}{inner}{'?' if optional else ''}")
        else:
            branches.append(re.escape(first))
    return f"(?:{'|'.join(branches)})"


TLD = trie(TLDS)

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


# Links -----------------------------------------------------------------------------------

# Each pattern begins with a character (not a look-behind), so that the search skips in C
# every position where it cannot begin.
_SCHEME_URL = re.compile(
    r"[hf](?<![a-z0-9].)(?:(?<=h)[tx]{2}ps?|(?<=f)tps?)(?::|\[:\]|\(:\))//[^\s<>\"]+"
)
_WWW = re.compile(rf"www(?<![a-z0-9_@-]www){DOT}{LABEL}{MORE_LABELS}(?P<path>/[^\s<>\"]*)?")
# A dot before a known top-level domain: where a host may end. The pattern begins at the
# dot itself (".", a bracket, the "d" of "dot", the "p" of "point"), so that the search
# skips in C every position where none can be; the spaces and labels before it are read
# backwards, in Python, for the few that match.
_DOT_WORDS_ONLY = DOT_WORD[3:-1]
_TLD_AFTER_DOT = re.compile(
    r"(?:\.(?:(?<=\s\.)\s+|(?!\s))"
    + "".join(rf"|{re.escape(bracket)}\s*(?:\.|{DOT_WORD})\s*{CLOSE}\s*" for bracket in "([{<")
    + r"|d(?<=\sd)ot\s+|p(?<=\sp)(?:oint|unkt|unto)\s+)"
    rf"(?P<tld>{TLD})(?![a-z0-9-])"
)
# The labels before that dot, read backwards (on the reversed text), and the labels after
# the top-level domain, at most _HOST_BACK characters each way.
_HOST_BACK = 128
_REVERSED_DOT_WORD = "(?:" + "|".join(w[::-1] for w in _DOT_WORDS_ONLY.split("|")) + ")"
_REVERSED_LABELS = re.compile(
    rf"{LABEL}(?:(?:\s*{CLOSE}\s*(?:\.|{_REVERSED_DOT_WORD})\s*{OPEN}\s*"
    rf"|\s+{_REVERSED_DOT_WORD}\s+|\s+\.\s+|(?<!\s)\.\s*){LABEL})*+"
)
_MORE_LABELS = re.compile(rf"(?:{DOT}{LABEL})*+")
# Well-known link shorteners and messaging links, links whatever their ending (not always a
# known top-level domain: "goo.gl", "is.gd"; or a word: "amzn.to", "t.me"), dots written out
# too. A hand list: no maintained package lists them, and the list changes slowly. Found as
# hosts are, from the dot, by the ending, and the label before it read backwards.
SHORTENERS = frozenset(
    """
    goo.gl is.gd v.gd bit.do rb.gy short.gy bl.ink tiny.one amzn.to amzn.eu shorturl.at
    s.id lnkd.in dlvr.it youtu.be qrco.de wa.me t.me m.me ig.me fb.me bit.ly cutt.ly t.co
    ow.ly buff.ly t.ly tinyurl.com tiny.cc rebrand.ly shor.by urlz.fr x.co tr.im wa.link
    linktr.ee bio.link
    """.split()
)
_SHORTENER = re.compile(
    _TLD_AFTER_DOT.pattern.split("(?P<tld>")[0]
    + rf"(?P<end>{trie({host.split('.')[1] for host in SHORTENERS})})(?![a-z0-9-])"
    r"(?P<path>/[^\s<>\"]*)?"
)
_LABEL_BACK = re.compile(r"\s*([a-z0-9]{1,12})(?![a-z0-9_@.-])")
_DOT_SPLIT = re.compile(f"({DOT})")
_AFTER_HOST = re.compile(r"(?![a-z0-9-])(?::\d{1,5})?(?P<path>/[^\s<>\"]*)?")
_TRAILING = ".,;:!?'\")]}>"  # punctuation after a link belongs to the sentence

Found = Iterator[tuple[int, int, str | None]]


def urls(folded: str, allowed: tuple[str, ...]) -> Found:
    if "//" not in folded:
        return
    for examined, match in enumerate(_SCHEME_URL.finditer(folded)):
        if examined == MAX_CANDIDATES:
            yield match.start(), len(folded), "link"  # past that, the rest is one finding
            return
        url = match.group().rstrip(_TRAILING)
        rest = url.split("//", 1)[1]
        host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1].split(":")[0]
        yield match.start(), match.start() + len(url), _link_kind(host, allowed)


def hosts(text: str, folded: str, origin: Sequence[int], allowed: tuple[str, ...]) -> Found:
    for examined, match in enumerate(_SHORTENER.finditer(folded)):
        if examined == MAX_CANDIDATES:
            yield match.start(), len(folded), "link"  # past that, the rest is one finding
            return
        label = _LABEL_BACK.match(folded[max(0, match.start() - 16) : match.start()][::-1])
        host = f"{label.group(1)[::-1]}.{match.group('end')}" if label else ""
        if host in SHORTENERS:
            end = match.end("end") + len((match.group("path") or "").rstrip(_TRAILING))
            yield match.start() - label.end(), end, _link_kind(host, allowed)  # type: ignore[union-attr]
    for examined, match in enumerate(_WWW.finditer(folded) if "www" in folded else ()):
        if examined == MAX_CANDIDATES:
            yield match.start(), len(folded), "link"  # past that, the rest is one finding
            return
        link = match.group().rstrip(_TRAILING)
        host = re.split(r"[/?#]", link, maxsplit=1)[0]
        yield match.start(), match.start() + len(link), _link_kind(host, allowed)
    examined = 0
    pos = 0
    while hit := _TLD_AFTER_DOT.search(folded, pos):
        examined += 1
        if examined > MAX_CANDIDATES:
            yield hit.start(), len(folded), "link"  # past that, the rest is one finding
            return
        back = folded[max(pos, hit.start() - _HOST_BACK) : hit.start()][::-1]
        spaces = len(back) - len(back.lstrip())  # before a spaced dot: "evil . com"
        labels = _REVERSED_LABELS.match(back, spaces)
        if labels is None:
            pos = hit.end()
            continue
        start = hit.start() - labels.end()
        more = _MORE_LABELS.match(folded, hit.end(), hit.end() + _HOST_BACK)
        parts = _DOT_SPLIT.split(folded[hit.end() : more.end()])  # type: ignore[union-attr]
        last = max((i for i in range(2, len(parts), 2) if parts[i] in TLDS), default=0)
        host_end = hit.end() + len("".join(parts[: last + 1]))
        tld_start = host_end - len(parts[last]) if last else hit.start("tld")
        pos = host_end
        if start and folded[start - 1] in "_@":
            continue  # part of a name or an address, not a host of its own
        after = _AFTER_HOST.match(folded, host_end)
        if after is None:
            continue
        host = folded[start:host_end]
        path = (after.group("path") or "").rstrip(_TRAILING)
        if folded[tld_start:host_end] in WORD_TLDS and not _strong_link(
            host, path, text, origin, tld_start, host_end
        ):
            continue
        end = after.start("path") + len(path) if path else after.end()  # with any port
        yield start, end, _link_kind(host, allowed)
        pos = max(pos, end)


def _strong_link(
    host: str, path: str, text: str, origin: Sequence[int], tld_start: int, tld_end: int
) -> bool:
    """Whether a host whose top-level domain is a word is a link rather than a sentence."""
    if path:
        return True  # t.me/name, wa.me/4479...
    dots = [dot.group() for dot in DOT_RE.finditer(host)]
    if any(re.search(OPEN, dot) for dot in dots):
        return True  # "[.]" and "(dot)" are written to evade, never by accident
    if any(dot != "." for dot in dots):
        return False  # "at home . me too", "polka dot to ...", "au point de rendez-vous"
    # "amazon.it" but not "Got it.No worries": a capital after the dot starts a sentence.
    return not original(text, origin, tld_start, tld_end).istitle()


def _link_kind(host: str, allowed: tuple[str, ...]) -> str | None:
    return None if host_allowed(host, allowed) else "link"
