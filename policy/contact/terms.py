"""Off-platform terms ("whatsapp", "paypal"): whole words, spaced out or in leetspeak, but not
ordinary phrases."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from .folding import fold

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


def terms_found(folded: str, terms: Collection[str]) -> Iterator[tuple[int, int, str | None]]:
    for term in terms:
        words = tuple(re.findall(r"[^\W_]+", fold(term)[0]))
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
