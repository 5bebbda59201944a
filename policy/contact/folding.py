"""Folding: the copy of a message every detector reads, and the way back to the original.

Compatibility-decomposed (NFKD), marks and invisible characters dropped, letters and digits
of other scripts and styles mapped to ASCII (see ``lookalikes``), lower case; each folded
character remembers where it came from. A cased copy of the same length keeps the case, for
the formats where case matters (wallet addresses).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from itertools import accumulate, compress, count
from operator import add
from typing import NamedTuple

from .lookalikes import LETTERS, SYMBOLS, digits_of, latin_by_name

_MARKS = frozenset({"Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: letters, but blank
_APOSTROPHES = frozenset("\u2018\u2019\u201b\u02bc\u02b9\u2032")
_FULL_STOPS = frozenset("\u3002\u2024\ufe52")
_PLAIN = re.compile(r"[ -~\t\n\r]*")  # printable ASCII, which folds to itself
_CACHE_LIMIT = 1 << 16


class Folded(NamedTuple):
    cased: str  # the folded text before lower case
    text: str  # the folded text every detector reads
    origin: Sequence[int]  # for each folded character, its index in the original


class _Table(dict[str, str]):
    """Each character's folded (cased) form, computed once."""

    def __missing__(self, char: str) -> str:
        if len(self) > _CACHE_LIMIT:
            self.clear()  # a message of every character there is cannot grow it for ever
        folded = self[char] = _fold_char(char)
        return folded


_TABLE = _Table()


def fold_text(text: str) -> Folded:
    """The folded text, cased and not, and where each of its characters came from."""
    if text.isascii() and _PLAIN.fullmatch(text):
        return Folded(text, text.lower(), range(len(text)))
    parts = list(map(_TABLE.__getitem__, text))
    cased = "".join(parts)
    if len(cased) == len(text) and "" not in parts:  # then no character became two either
        origin: Sequence[int] = range(len(text))
    else:
        origin = [index for index, part in enumerate(parts) for _ in part]
    return Folded(cased, cased.lower(), origin)


def fold(text: str) -> tuple[str, Sequence[int]]:
    """The folded text, and for each of its characters the index it came from in `text`."""
    folded = fold_text(text)
    return folded.text, folded.origin


def _fold_char(char: str) -> str:
    if " " <= char <= "~" or char in "\t\n\r":
        return char
    if char.isspace():
        return " "
    if unicodedata.category(char)[0] == "C" or char in _BLANK_LETTERS:
        return ""  # zero-width and other invisible characters, soft hyphen, controls
    out = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) not in _MARKS:
            out.append(part if part.isascii() else _fold_part(part))
    # Only characters whose lower case is one character, so that both copies align ("İ"
    # decomposes before it gets here).
    return "".join(c for c in "".join(out) if len(c.lower()) == 1)


def _fold_part(char: str) -> str:
    if char.isspace():
        return " "
    category = unicodedata.category(char)
    if category[0] == "N" or (category == "Lo" and unicodedata.numeric(char, None) is not None):
        digits = digits_of(char)
        if digits is not None:
            return digits
    if char in LETTERS:
        return LETTERS[char]
    if category[0] == "L" or category == "So":
        letters = latin_by_name(char)  # small capitals, regional indicators, ł, ø, æ
        if letters is not None:
            return letters
    if category == "Pd" or char == "\u2212":
        return "-"
    if char in _APOSTROPHES:
        return "'"
    if char in _FULL_STOPS:
        return "."
    return SYMBOLS.get(char, char)


def original(text: str, origin: Sequence[int], start: int, end: int) -> str:
    """The original text of folded characters ``start`` to ``end``."""
    return text[origin[start] : origin[end - 1] + 1]


def original_span(origin: Sequence[int], start: int, end: int) -> tuple[int, int]:
    """The indexes in the original text of folded characters ``start`` to ``end``."""
    return origin[start], origin[end - 1] + 1


# Characters written one by one with spaces between them, "j o h n @ g m a i l . c o m":
# three or more, the last of which may begin a longer word ("j o h n@gmail.com").
_SPACED = re.compile(r"(?<!\S)(?:\S {1,3}){2,}\S")
# What makes a spaced-out run worth joining up: an address or a link is near.
_ADDRESS_NEAR = re.compile(r"[@.]|(?<![a-z])(?:at|dot|point|punkt|arobase|chez)(?![a-z])")
_NEAR = 12
_HINTS = ("@", ".", "at", "dot", "point", "punkt", "arobase", "chez")


def squeeze(folded: str) -> tuple[str, list[int]] | None:
    """`folded` with characters spaced out one by one joined up, where an @, a dot or a word
    for them is near, and for each character its index in `folded`; None if nothing is."""
    if not any(hint in folded for hint in _HINTS):
        return None
    pieces: list[str] = []
    index: list[int] = []
    done = 0
    for run in _SPACED.finditer(folded):
        start, end = run.span()
        if not _ADDRESS_NEAR.search(folded, max(0, start - _NEAR), end + _NEAR):
            continue
        # Single characters between spaces: each piece's place is the length of those
        # before it plus one space each (all in C, for runs as long as the message); with
        # one space each, every other character.
        parts = folded[start:end].split(" ")
        pieces += [folded[done:start], "".join(parts)]
        index.extend(range(done, start))
        if 2 * len(parts) - 1 == end - start:
            index.extend(range(start, end, 2))
        else:
            places = map(add, accumulate(map(len, parts), initial=start), count())
            index.extend(compress(places, parts))
        done = end
    if not pieces:
        return None
    pieces.append(folded[done:])
    index.extend(range(done, len(folded)))
    return "".join(pieces), index
