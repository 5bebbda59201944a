"""Off-platform terms misspelt: a whole word one edit (a letter left out, added, changed, or
two swapped) away from a term of seven letters or more, "whatsap", "watsapp", "telegarm",
"instagarm", unless it is a word of its own: "finance" is not Binance, "discard" is not
Discord, "message" is not iMessage. Shorter terms are left alone: one edit from "skype" or
"paypal" is too many ordinary words ("paypal" and "paypals" aside), and a short word is
rarely misspelt by accident.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

from .folding import fold

_MIN_LETTERS = 7
_ALPHABET = "abcdefghijklmnopqrstuvwxyz"
# Words one edit away from a default term that are words of their own in the English,
# French, German, Spanish or Italian word lists (Debian's wamerican-large, wbritish-large,
# wfrench, wngerman, wspanish and witalian). A term's own plural, or its spelling in another
# language ("telegrams", "Telegramm", "bitcoins"), still names it and is not listed.
_WORDS = frozenset(
    """
    telegraf message facetiae facetie messender discard discoed discoid discorda discorde
    discordi distord resolut revalut revolat revolt revolu revolue revolus revolute
    bilance finance
    """.split()
)
_WORD = re.compile(r"[a-z]{6,}")


def misspelt(folded: str, terms: tuple[str, ...]) -> Iterator[tuple[int, int, str]]:
    """Whole words of `folded` one edit away from a term: their spans and the term (its
    words joined by a space)."""
    variants = _variants(terms)
    if not variants:
        return
    found = variants.keys() & set(_WORD.findall(folded))  # in C: most texts have none
    if not found:
        return
    for match in _WORD.finditer(folded):
        start, end = match.span()
        if match.group() in found and not (
            (start and folded[start - 1].isalpha())
            or (end < len(folded) and folded[end].isalpha())
        ):
            yield start, end, variants[match.group()]


@functools.lru_cache(maxsize=64)
def _variants(terms: tuple[str, ...]) -> dict[str, str]:
    """Each word one edit away from a long term, and that term."""
    exact: set[str] = set()
    variants: dict[str, str] = {}
    for term in terms:
        words = re.findall(r"[^\W_]+", fold(term)[0])
        letters = "".join(words)
        exact.add(letters)
        if len(letters) >= _MIN_LETTERS and letters.isascii() and letters.isalpha():
            for variant in _edits(letters):
                variants.setdefault(variant, " ".join(words))
    return {word: term for word, term in variants.items() if word not in exact | _WORDS}


def _edits(word: str) -> set[str]:
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    return {
        *(left + right[1:] for left, right in splits if right),
        *(left + right[1] + right[0] + right[2:] for left, right in splits if len(right) > 1),
        *(left + c + right[1:] for left, right in splits if right for c in _ALPHABET),
        *(left + c + right for left, right in splits for c in _ALPHABET),
    }
