"""Numbers written in words, English and French, and how many digits they stand for.

"zero seven nine" is three digits, "seventy nine" two, and French numbers, which are read
in pairs, two each: "zéro six douze trente-quatre cinquante-six soixante-dix-huit" is ten.
Accents are gone after folding ("zéro" is "zero"). Hundreds and thousands are left out:
nobody reads a phone number that way, and "cent" is also an English word.
"""

from __future__ import annotations

from collections.abc import Iterable

# Each word by what it is: a single digit, a number from 10 to 19, or a multiple of ten.
SINGLES = {
    **dict.fromkeys("zero oh o nought".split(), 0),
    **dict.fromkeys("one un une".split(), 1),
    **dict.fromkeys("two deux".split(), 2),
    **dict.fromkeys("three trois".split(), 3),
    **dict.fromkeys("four quatre".split(), 4),
    **dict.fromkeys("five cinq".split(), 5),
    "six": 6,
    **dict.fromkeys("seven sept".split(), 7),
    **dict.fromkeys("eight huit".split(), 8),
    **dict.fromkeys("nine neuf".split(), 9),
}
TEENS = frozenset(
    """
    ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen
    dix onze douze treize quatorze quinze seize
    """.split()
)
TENS = frozenset(
    """
    twenty thirty forty fourty fifty sixty seventy eighty ninety
    vingt vingts trente quarante cinquante soixante septante octante huitante nonante
    """.split()
)
# Glued together they still count: "zeroseven", "soixantedix". Longest first, so that
# "seventeen" is not "seven" and something else.
ALTERNATION = "|".join(sorted({*SINGLES, *TEENS, *TENS}, key=len, reverse=True))
TENS_WITH_ET = ("vingt", "trente", "quarante", "cinquante", "soixante")  # "vingt et un"
_FRENCH_TEEN_TENS = frozenset({"soixante", "vingt", "vingts"})  # soixante-dix, quatre-vingt-dix


def digit_count(words: Iterable[tuple[str, bool]]) -> int:
    """How many digits a run of number words stands for.

    ``words`` are the words in order, each with whether it is joined to the previous one
    by a space or a hyphen only (so that "seventy nine" is one number, and "seventy, nine"
    two).
    """
    count = 0
    previous: str | None = None  # the word the current number may still grow from
    for word, joined in words:
        grows = joined and previous is not None and _grows(previous, word)
        if not grows:
            count += 1 if word in SINGLES else 2
        elif previous == "quatre":
            count += 1  # quatre (one digit so far) becomes quatre-vingt: two
        previous = _state(previous, word) if grows else _state(None, word)
    return count


def _grows(previous: str, word: str) -> bool:
    """Whether `word` continues the number that `previous` began (its state, see _state)."""
    if previous == "quatre":
        return word in {"vingt", "vingts"}  # quatre-vingt: 80
    if previous == "tens":
        return word in SINGLES and SINGLES[word] != 0  # seventy nine, trente-quatre
    if previous == "tens+teen":
        return word in TEENS or (word in SINGLES and SINGLES[word] != 0)
    if previous == "dix":
        return word in {"sept", "huit", "neuf"}  # dix-sept
    return False


def _state(previous: str | None, word: str) -> str | None:
    """What a number can still become after `word`."""
    if previous == "quatre" or word in _FRENCH_TEEN_TENS:
        return "tens+teen"  # soixante-dix-huit, quatre-vingt-douze
    if previous == "tens+teen" and word == "dix":
        return "dix"  # quatre-vingt-dix-neuf
    if previous is None and word == "quatre":
        return "quatre"
    if previous is None and word == "dix":
        return "dix"
    if previous is None and word in TENS:
        return "tens"
    return None
