"""Off-platform terms ("whatsapp", "paypal"): whole words, spaced out, in leetspeak or misspelt
by one edit (misspellings.py), but not ordinary phrases; words that are also ordinary English
("signal", "line", "wise") and aliases ("tg" for Telegram) only where they name the app."""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Collection, Iterator

from .folding import fold
from .limits import MAX_CANDIDATES
from .misspellings import misspelt

# What digits and symbols stand for in leetspeak: "p@yp4l", "$kr1ll".
_CLASSES = {"a": "a4@", "e": "e3", "i": "i1", "l": "l1", "o": "o0", "s": "s5$", "t": "t7"}
_UNLEET = str.maketrans("013457@$", "oieastas")
_LEADING = {"a": "a@", "s": "s$"}  # what a term may begin with, but for digits
_LETTER = r"[^\W\d_]"
# Spaces, punctuation or symbols between the letters; never a letter, so taken for good.
_TERM_GAP = r"(?:[^\w@$]|_){0,3}+"
_GAP_RUN = re.compile(r"((?:[^\w@$]|_)+)")
_CLAUSE_END = re.compile(r"[.,;:!?]\s")
# Short words that make two pieces a phrase rather than a split-up term: "can we chat".
_FUNCTION_WORDS = frozenset(
    """
    a i we us me my you he she it is am are be to of in on at by or an as so do go no up if
    the and for but can will our your his her its was has had not all any with via
    """.split()
)

# Terms that are also ordinary words count only where they name the app: "add me on
# signal", "via Signal", "signal app", "my line ID", "pay with wise", "ig: @name".
CONTEXTUAL = frozenset("signal line wise messenger ig snap fb tg whatsup".split())
# Other names of a term, looked for with it, that are also ordinary words or abbreviations
# and so count only in context: "tg" is Telegram but also "thank god" and French for "shut
# up"; "whatsup" is WhatsApp misspelt but also "what's up" ("whatsup me on ...", "add me on
# whatsup").
ALIASES = {"telegram": ("tg",), "whatsapp": ("whatsup",)}
# Abbreviations, after which a handle-like name counts without a colon: "tg bob_seller".
_ABBREVIATIONS = frozenset("ig fb tg".split())
_ALIAS_NAMES = frozenset(alias for aliases in ALIASES.values() for alias in aliases)
_CONTACT_VERBS = (
    r"(?:add|text|message|msg|contact|reach|find|write|call|ping|dm|talk|chat|speak|join"
    r"|follow|hit\s+me\s+up|hmu|ajoute|ajouter|contacte|contacter|ecris|ecrire)"
    r"(?:\s+(?:me|us|moi|nous)|-moi|-nous)?\s+(?:on|via|through|over|in|sur|par)"
)
_CONTACT_BEFORE = (
    rf"(?:{_CONTACT_VERBS}"
    r"|(?:pay|paid|payment|send|sent|transfer|payer|paie|paye|envoie|envoyer|virement"
    r"|transfert)(?:\s+(?:me|us|it|money|the\s+money))?\s+(?:with|via|through|by|on|using"
    r"|par|avec|sur)"
    r"|(?:i'?m|i\s+am|we\s+are|we'?re|are\s+you|r\s+u|you|u|me|us|moi|nous)\s+(?:on|sur)"
    r"|@[a-z0-9_.]{2,30}\s+(?:on|sur|via)"
    r"|via|sur|download|install|installe|telecharge)"
)
_BEFORE = re.compile(rf"(?<![a-z]){_CONTACT_BEFORE}[\s:,-]*\Z")
# "line" is a queue, a bus route and a line of text: only a contact verb names the app.
_STRICT_BEFORE = {"line": re.compile(rf"(?<![a-z]){_CONTACT_VERBS}[\s:,-]*\Z")}
_AFTER_WORDS = {
    "signal": "app|id|account|username|handle|number|group|chat|messenger|contact",
    "line": "app|id|account|username|handle|group|chat|contact",
    "wise": "account|transfer|app|card|payment|compte|virement|business",
    "messenger": "app|id|account|username|handle|chat|group",
    "ig": "account|handle|profile|page|username|name|id|dm",
    "snap": "app|id|account|username|handle|name|code|chat|story",
    "fb": "account|profile|page|name|messenger|marketplace|messages?",
    "tg": "account|handle|profile|username|name|id|channel|group|chat|dm|app|me|contact",
    "whatsup": "me|us|app|number|no|nr|group|call|id|account|contact|message|msg|video",
}
_AFTER = {
    term: re.compile(rf"[\s:-]*(?:{words})(?![a-z])") for term, words in _AFTER_WORDS.items()
}
# A name shaped like a handle: a letter, then a dot, an underscore or a digit among letters
# ("bob.seller", "jo_b92"), four characters or more ("e.g" is none).
_HANDLE_LIKE = r"(?=[a-z]*[._0-9])[a-z][a-z0-9._]{2,29}[a-z0-9_](?![\w@.-])"
# A handle or an id after a term belongs to it: "insta: @name", "telegram @name", "ig @name",
# "skype id: jo.b", "line ID is jo", "ig: bob.seller".
_HANDLE = re.compile(
    r"\s*(?:is\s+|[:=-]\s*)?@[a-z0-9_.]{2,30}[a-z0-9_]"
    r"|\s*(?:id|username|user\s*name|handle|pseudo|identifiant)\s*(?:is\s+|[:=-]\s*)"
    r"@?[a-z0-9_.]{1,30}[a-z0-9_]"
    rf"|\s*(?:is\s+|[:=]\s*){_HANDLE_LIKE}"
)
_SPACED_HANDLE = re.compile(rf"\s+{_HANDLE_LIKE}")
_HANDLE_TERMS = frozenset("ig insta instagram snap snapchat fb tiktok".split())
# "my ig is jo.b", "mon insta c'est jo_b": a name after a possessive and "is", one that looks
# like a handle (a digit, a dot, an underscore: "my snap is broken" is no name).
_MY = re.compile(r"(?<![a-z])(?:my|mon|ma|our)\s+\Z")
_IS = r"\s*(?:is|:|=|c'est|est)\s*"
_IS_NAME = re.compile(
    rf"{_IS}(?:@[a-z0-9_.]{{1,30}}|(?=[a-z0-9_.]*[0-9_.])[a-z0-9_.]{{2,30}})[a-z0-9_]"
)
# After a term that is no ordinary word, any name: "my skype is bobseller".
_IS_ANY_NAME = re.compile(rf"{_IS}@?[a-z0-9_.]{{1,30}}[a-z0-9_]")
_IS_HANDLE = re.compile(rf"{_IS}(?:@[a-z0-9_.]{{1,30}}[a-z0-9_]|{_HANDLE_LIKE})")
_WINDOW = 48
_HANDLE_BEFORE = re.compile(r"(?<![\w@])@[a-z0-9_.]{2,30}[a-z0-9_]\s+(?:on|sur|via)\s+\Z")


def terms_found(folded: str, terms: Collection[str]) -> Iterator[tuple[int, int, str | None]]:
    every = _with_aliases(tuple(terms))
    patterns, keys = _patterns(every)
    candidates = itertools.chain(
        (
            (m.start(), m.end(), keys[m.lastgroup or ""], m.group())
            for p in patterns
            for m in p.finditer(folded)
        ),
        ((start, end, key, None) for start, end, key in misspelt(folded, every)),
    )
    for examined, (start, end, key, found) in enumerate(candidates):
        if examined == MAX_CANDIDATES:
            yield start, len(folded), "term"  # past that, the rest is one finding
            return
        words = key.split(" ")
        if found is not None and not _split_plausibly(found, tuple(words)):
            continue
        letters = "".join(words)
        handle = _handle(folded, start, end, letters)
        if letters in CONTEXTUAL and not (
            (found is not None and _spelled_out(found, letters))
            or handle is not None
            or _in_context(folded, start, end, letters)
        ):
            continue
        if handle is not None:
            yield start, handle.end(), "term"
        before = _HANDLE_BEFORE.search(folded, max(0, start - _WINDOW), start)
        if before is not None:  # "@jo_b on insta": the handle is the contact detail
            yield before.start(), end, "term"
        yield start, end, "term"


def _handle(folded: str, start: int, end: int, letters: str) -> re.Match[str] | None:
    """The handle or id after a term, which belongs to it: "insta: @jo_b", "ig: bob.seller",
    "tg bob_seller", "my skype is bobseller", "my ig is jo_b92"."""
    handle = _HANDLE.match(folded, end)
    if handle is None and letters in _ABBREVIATIONS:
        handle = _SPACED_HANDLE.match(folded, end)
    if handle is None and _MY.search(folded, max(0, start - 8), start):
        if letters not in CONTEXTUAL:
            handle = _IS_ANY_NAME.match(folded, end)
        else:
            handle = (_IS_NAME if letters in _HANDLE_TERMS else _IS_HANDLE).match(folded, end)
    return handle


@functools.lru_cache(maxsize=64)
def _with_aliases(terms: tuple[str, ...]) -> tuple[str, ...]:
    aliases = (alias for term in terms for alias in ALIASES.get(fold(term)[0].strip(), ()))
    return tuple(dict.fromkeys((*terms, *aliases)))


@functools.lru_cache(maxsize=64)
def _patterns(terms: tuple[str, ...]) -> tuple[list[re.Pattern[str]], dict[str, str]]:
    """The terms as patterns, one for each first letter, and which term each of their
    (empty) groups stands for.

    A pattern begins with its first letter and checks the word boundary only then, so that
    the search skips in C every position that cannot begin a term. It is a trie: terms that
    begin alike share their beginning, and each step tests the letters that may come next
    before it tries them one by one, so that "s s s s" costs one test per letter, not one
    per term beginning with s. A term may begin in leetspeak ("$kr1ll") but not with a leet
    character standing alone ("1 1 1").
    """
    keys: dict[str, str] = {}
    trie: dict[str, _Node] = {}
    for term in terms:
        words = tuple(re.findall(r"[^\W_]+", fold(term)[0]))
        letters = "".join(words)
        if not letters or " ".join(words) in keys.values():
            continue
        name = f"t{len(keys)}"
        keys[name] = " ".join(words)
        node = trie.setdefault(_CLASSES.get(letters[0], letters[0]), _Node())
        for letter in letters[1:]:
            node = node.children.setdefault(_CLASSES.get(letter, letter), _Node())
        node.ends = node.ends or name
    patterns = [
        re.compile(
            rf"[{re.escape(_LEADING.get(first[0], first[0]))}](?<!{_LETTER}.)"
            rf"(?:(?<=[a-z])|(?=[a-z]))[{re.escape(first)}]{{0,2}}{_after(node)}(?!{_LETTER})"
        )
        for first, node in trie.items()
    ]
    # Terms beginning with a leet digit ("5kype", "1nstagram"), in one pattern that needs a
    # letter right after the digit: digits alone ("1 1 1") cost one test each.
    by_digit = [
        f"(?<={digit})[{re.escape(first)}]{{0,2}}{_after(node)}"
        for first, node in trie.items()
        for digit in first
        if digit.isdigit()
    ]
    if by_digit:
        digits = "".join(sorted({d for first in trie for d in first if d.isdigit()}))
        patterns.append(
            re.compile(rf"[{digits}](?<!{_LETTER}.)(?=[a-z])(?:{'|'.join(by_digit)})(?!{_LETTER})")
        )
    return patterns, keys


class _Node:
    """A step of the trie: the letters that may come next, and the term that ends here."""

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.ends: str | None = None


def _after(node: _Node) -> str:
    """What may follow a letter: the next letters (longest terms first), or the end."""
    branches = []
    if node.children:
        following = re.escape("".join(sorted(set("".join(node.children)))))
        alternatives = "|".join(
            f"[{re.escape(c)}]{{1,3}}{_possessive(c, child)}{_after(child)}"
            for c, child in sorted(node.children.items(), key=lambda item: -_depth(item[1]))
        )
        branches.append(f"{_TERM_GAP}(?=[{following}])(?:{alternatives})")
    if node.ends:
        branches.append(f"(?P<{node.ends}>)")
    return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"


def _possessive(letter: str, node: _Node) -> str:
    """Repeats of a letter are taken for good unless the next letter could be one of them
    ("pp" in whatsapp, "1" for both i and l in skrill)."""
    return "" if any(set(letter) & set(following) for following in node.children) else "+"


def _depth(node: _Node) -> int:
    return 1 + max((_depth(child) for child in node.children.values()), default=0)


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


def _spelled_out(found: str, letters: str) -> bool:
    """Letters written one by one ("s.i.g.n.a.l") or in leetspeak ("s1gn4l") are deliberate;
    but not for a two-letter term ("1g" is a gram) or an alias ("wh4tsup")."""
    if len(letters) <= 2 or letters in _ALIAS_NAMES:
        return False
    pieces = [p for p in _GAP_RUN.split(found)[0::2] if p]
    spelled = len(pieces) >= 3 and all(len(p) <= 2 for p in pieces)
    return spelled or found.translate(_UNLEET) != found


def _in_context(folded: str, start: int, end: int, letters: str) -> bool:
    """Whether an ordinary word names the app here: a contact or payment phrase before it, or
    a word such as "app" or "id" after it (a handle after it is checked before)."""
    before = folded[max(0, start - _WINDOW) : start]
    return bool(
        _STRICT_BEFORE.get(letters, _BEFORE).search(before) or _AFTER[letters].match(folded, end)
    )


def _squeeze(pieces: list[str]) -> list[str]:
    return [re.sub(r"(.)\1+", r"\1", piece) for piece in pieces]
