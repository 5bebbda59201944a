"""What a character from another script or style stands for, from Unicode's own data.

Three sources, no hand-made table of look-alikes:

- ``unicodedata``'s numeric values, for characters that *are* digits: circled and dingbat
  digits (U+2460, U+278A, U+24F5), CJK numerals (U+3007, U+4E00 ... U+4E5D, U+96F6), other
  scripts' digits;
- the names of Latin letters in other styles: small capitals (U+1D00 "LATIN LETTER SMALL
  CAPITAL A"), letters with a stroke or hook (U+0142, U+0111, U+00F8), regional indicators
  and squared letters (U+1F1E6, U+1F170);
- Unicode's confusables (``confusables.json`` of the confusable_homoglyphs package, the
  published confusables.txt as pairs), followed up to two pairs away to reach an ASCII
  letter: Cyrillic er (U+0440), Greek capital rho (U+03A1), Armenian oh (U+0585), Cherokee
  la (U+13B3).

Only what really stands for a letter or digit becomes one: a letter becomes a letter, never
a digit (Cyrillic ze, U+0437, looks like a 3 and be, U+0431, like a 6, but Russian text is
full of them), and a digit comes only from a character whose numeric value says so.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

from confusable_homoglyphs.confusables import confusables_data

# "LATIN SMALL LETTER L WITH STROKE", "LATIN LETTER SMALL CAPITAL A", "REGIONAL INDICATOR
# SYMBOL LETTER A", "NEGATIVE SQUARED LATIN CAPITAL LETTER A": the letter is in the name.
_LATIN_NAME = re.compile(
    r"(?:LATIN (?:CAPITAL |SMALL )?LETTER (?:SMALL CAPITAL )?|REGIONAL INDICATOR SYMBOL LETTER "
    r"|(?:NEGATIVE )?(?:SQUARED|CIRCLED|PARENTHESIZED) LATIN (?:CAPITAL |SMALL )?LETTER )"
    r"(?P<letter>[A-Z]|AE|OE|SHARP S|DOTLESS [IJ])(?: WITH .+)?"
)
_LIGATURE_NAME = re.compile(r"LATIN (?:CAPITAL|SMALL) LIGATURE (?P<letters>[A-Z]{2,3})")
_CONFUSABLE_DEPTH = 2  # pairs followed from a character to the letter it imitates
_PUNCTUATION = frozenset(".:/@")  # what look-alike symbols may become (emails and links)


def latin_by_name(char: str) -> str | None:
    """The ASCII letters a Latin letter in another style stands for, in its case."""
    name = unicodedata.name(char, "")
    if match := _LATIN_NAME.fullmatch(name):
        letters = match.group("letter")
        letters = {"SHARP S": "SS"}.get(letters, letters.removeprefix("DOTLESS "))
    elif match := _LIGATURE_NAME.fullmatch(name):
        letters = match.group("letters")
    else:
        return None
    small = unicodedata.category(char) == "Ll" or "SMALL LETTER" in name
    return letters.lower() if small else letters


def digits_of(char: str) -> str | None:
    """The ASCII digits a digit-like character stands for: a circled one is 1, the CJK
    number zero is 0, a negative circled eleven is 11."""
    value = unicodedata.digit(char, None)
    if value is not None:
        return str(value)
    number = unicodedata.numeric(char, None)
    if number is None or number != int(number):
        return None  # ½ and ⅓ decompose into digits already; no other fraction is a digit
    category = unicodedata.category(char)
    if 0 <= number <= 9 or (category == "No" and number <= 20):  # ➓ ⓫...⓴, not 十 or 百
        return str(int(number))
    return None


def _pairs() -> dict[str, set[str]]:
    """Each character and the characters Unicode says it can be confused with (both ways)."""
    pairs: dict[str, set[str]] = defaultdict(set)
    for key, groups in confusables_data.items():
        key = key.strip("\u200e\u200f")  # right-to-left characters come with direction marks
        for group in groups:
            other = group["c"].strip("\u200e\u200f")
            if len(key) == 1 and len(other) == 1 and key != other:
                pairs[key].add(other)
                pairs[other].add(key)
    return pairs


def _letter_target(char: str) -> str | None:
    """An ASCII letter as such or by its name (a small capital, a letter with a stroke)."""
    if char.isascii():
        return char.lower() if char.isalpha() else None
    letters = latin_by_name(char)
    return letters.lower() if letters and len(letters) == 1 else None


def _closest_letter(char: str, pairs: dict[str, set[str]]) -> str | None:
    """The ASCII letter fewest confusable pairs away (at most two), the first in order on a tie."""
    seen, frontier = {char}, [char]
    for _ in range(_CONFUSABLE_DEPTH):
        hits: set[str] = set()
        following: list[str] = []
        for node in frontier:
            for other in sorted(pairs.get(node, ())):
                if other in seen:
                    continue
                seen.add(other)
                target = _letter_target(other)
                if target:
                    hits.add(target)
                elif not other.isascii():
                    following.append(other)
        if hits:
            return min(hits)
        frontier = following
    return None


def _tables() -> tuple[dict[str, str], dict[str, str]]:
    letters: dict[str, str] = {}
    symbols: dict[str, str] = {}
    pairs = _pairs()
    for char in pairs:
        if char.isascii() or len(unicodedata.normalize("NFKD", char)) != 1:
            continue  # ASCII stays; fullwidth and mathematical letters decompose
        category = unicodedata.category(char)
        if category[0] == "L" and latin_by_name(char) is None:
            target = _closest_letter(char, pairs)
            if target is not None:
                # Greek capital iota is listed with "l", but it is an I.
                target = "i" if target == "l" and char.isupper() else target
                letters[char] = target.upper() if char.isupper() else target
        elif category[0] in "PS":
            near = sorted(pairs[char] & _PUNCTUATION)
            if near:
                symbols[char] = near[0]
    return letters, symbols


# Non-ASCII letters by the ASCII letter they imitate (in their case), and symbols by the
# punctuation they imitate (the Armenian full stop is a colon, the division slash a slash).
LETTERS, SYMBOLS = _tables()
