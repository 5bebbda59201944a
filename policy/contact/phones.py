"""Phone numbers: runs of digits and number words, after prices, dates and times are set aside."""

from __future__ import annotations

import re
from collections.abc import Iterator

# Eight digits: a whole national number almost everywhere, longer than prices, years and
# short order numbers. A seven-digit local number without its area code goes unnoticed.
_PHONE_MIN_DIGITS = 8
_NUMBER_WORDS = "zero|one|two|three|four|five|six|seven|eight|nine"
# One piece of a number: digits (with O for 0 and l or I for 1 when among digits), digits
# as words (also run together, "oh" for zero), "double seven", or a lone "o".
_UNIT = re.compile(
    rf"(?P<repeat>(?<![a-z])(?:double|triple)[\s-]*(?:{_NUMBER_WORDS}|oh|o|\d)(?![a-z0-9]))"
    rf"|(?P<words>(?<![a-z])(?:{_NUMBER_WORDS}|oh)+(?![a-z]))"
    r"|(?P<digits>(?<![a-z0-9])(?=[oil]*[0-9])[0-9oil]++(?![a-z0-9])|[0-9]+)"
    r"|(?P<o>(?<![a-z])o(?![a-z]))"
)
_NUMBER_WORD = re.compile(rf"{_NUMBER_WORDS}|oh")
# What may stand between the pieces of one phone number. Not commas or colons: they
# separate prices ("1,250"), lists and times ("10:30"); a comma only between words
# ("zero, seven, nine").
_NUMBER_GAP = re.compile(r"[\s.\-/\\()\[\]+_*|~]{0,4}")
_WORD_GAP = re.compile(r"\s*,\s*")

# Numbers that look like digit runs but are not phone numbers, each standing alone: a time
# range directly followed by ".34" is part of something longer (for dates see _is_date).
_ALONE_BEFORE = r"(?<!\d)(?<!\d[./-])"
_ALONE_AFTER = r"(?!\d)(?![./-]\d)"
_DATE = re.compile(
    r"(?<!\d)(?:(?P<y>(?:19|20)\d\d)(?P<s1>[./-])(?P<m>\d\d?)(?P=s1)(?P<d>\d\d?)"
    r"|(?P<a>\d\d?)(?P<s2>[./-])(?P<b>\d\d?)(?P=s2)(?:(?:19|20)\d\d|\d\d)"
    r"|(?P<sa>\d\d?)/(?P<sb>\d\d?))(?!\d)"
)
_TIME = r"(?:[01]?\d|2[0-3])[:.h][0-5]\d(?:\s?[ap]\.?m\.?)?"
_TIME_RANGE = re.compile(rf"{_ALONE_BEFORE}{_TIME}\s*(?:-|to|till|until)\s*{_TIME}{_ALONE_AFTER}")
_YEAR_RANGE = re.compile(
    rf"{_ALONE_BEFORE}(?:19|20)\d\d\s*[-/]\s*(?:(?:19|20)\d\d|\d\d){_ALONE_AFTER}"
)
# Timestamps in the names of photos, which are often a message's whole body:
# IMG_20240512_103000.jpg, IMG-20240512-WA0001.jpg, Screenshot_2024-05-12-10-30-00-123.png.
_TIMESTAMP = re.compile(
    r"(?<!\d)(?:19|20)\d\d(?P<s>[-_.]?)(?:0[1-9]|1[0-2])(?P=s)(?:0[1-9]|[12]\d|3[01])"
    r"(?:[-_t ]?(?:[01]\d|2[0-3])(?P<t>[-_.:]?)[0-5]\d(?:(?P=t)[0-5]\d)?(?:[-_.]?\d{1,3})?)?"
    r"(?!\d)"
)
_CURRENCY = (
    r"(?:[£$€¥₹₽₩₺₴]|(?<![a-z])(?:usd|eur|gbp|chf|jpy|cad|aud|pln|sek|nok|dkk|czk|huf|ron"
    r"|rub|uah|inr|cny|euros?|dollars?|pounds?|bucks|quid|kr)(?![a-z]))"
)
# An amount: 1250, 1,250.00, 1.250,00, 1 250 000. Its thousands separator is one character
# used throughout; a leading zero makes it something else (a phone number).
_AMOUNT = (
    r"(?<!\d)(?P<n>(?:[1-9]\d{0,2}(?:(?P<sep>[ .,'])\d{3}(?:(?P=sep)\d{3})?)?|[1-9]\d{0,6}|0)"
    r"(?:[.,]\d\d?)?)"
)
_PRICES = (
    re.compile(rf"{_CURRENCY}\s?{_AMOUNT}"),
    re.compile(rf"{_AMOUNT}\s?{_CURRENCY}"),
)
# A price of ten million or more is more likely a phone number with a currency sign added.
_PRICE_MAX_DIGITS = 7
_NEXT_TO_DIGITS = re.compile(r"[\s.\-/()]{0,4}\d")


def masked(folded: str, claims: list[tuple[int, int, str | None]]) -> str:
    """The folded text with what is claimed, and numbers that are no phone, blanked out."""
    chars = list(folded)
    spans = [(start, end) for start, end, _ in claims]
    spans += [m.span() for m in _DATE.finditer(folded) if _is_date(m, folded)]
    spans += [m.span() for m in _TIME_RANGE.finditer(folded)]
    spans += [m.span() for m in _YEAR_RANGE.finditer(folded)]
    spans += [m.span() for m in _TIMESTAMP.finditer(folded)]
    for pattern in _PRICES:
        spans += [m.span() for m in pattern.finditer(folded) if _is_price(m, folded)]
    for start, end in spans:
        chars[start:end] = "\x00" * (end - start)  # folding removed every \x00 of the text
    return "".join(chars)


def _is_date(match: re.Match[str], folded: str) -> bool:
    start, end = match.span()
    # Alone, or in a range of dates ("12/05-14/05"): "06.12.34.56.78" holds no date.
    after = re.match(r"([./-])(\d[\d./]*)", folded[end : end + 12])
    before = re.search(r"(\d[\d./]*)([./-])$", folded[max(0, start - 12) : start])
    neighbours = [after.group(1, 2)] if after else []
    neighbours += [before.group(2, 1)] if before else []
    own = match.group("s1") or match.group("s2") or "/"
    for joint, neighbour in neighbours:
        if joint != "-" or own == "-" or not _DATE.fullmatch(neighbour):
            return False
    if match.group("y"):
        return 1 <= int(match.group("m")) <= 12 and 1 <= int(match.group("d")) <= 31
    a, b = (int(match.group(n) or match.group(s)) for n, s in (("a", "sa"), ("b", "sb")))
    return 1 <= a <= 31 and 1 <= b <= 31 and min(a, b) <= 12  # day/month or month/day


def _is_price(match: re.Match[str], folded: str) -> bool:
    """A currency amount that is not glued to more digits (a phone number with a "$")."""
    whole = re.split(r"[.,]\d\d?$", match.group("n"))[0]
    if sum(c.isdigit() for c in whole) > _PRICE_MAX_DIGITS:
        return False
    before = folded[max(0, match.start() - 5) : match.start()]
    return not re.search(r"\d[\s.\-/()]{0,4}$", before) and not _NEXT_TO_DIGITS.match(
        folded, match.end()
    )


def phones(masked: str) -> Iterator[tuple[int, int, str | None]]:
    """Runs of number pieces, joined by separators, with at least 8 digits in all."""
    start = end = digits = 0
    previous_is_word = False
    for unit in _UNIT.finditer(masked):
        is_word = unit.lastgroup != "digits"
        gap = masked[end : unit.start()]
        if digits and (
            _NUMBER_GAP.fullmatch(gap)
            or (previous_is_word and is_word and _WORD_GAP.fullmatch(gap))
        ):
            digits += _digit_count(unit)
        else:
            if digits >= _PHONE_MIN_DIGITS:
                yield _phone_span(masked, start, end)
            start, digits = unit.start(), _digit_count(unit)
        end, previous_is_word = unit.end(), is_word
    if digits >= _PHONE_MIN_DIGITS:
        yield _phone_span(masked, start, end)


def _digit_count(unit: re.Match[str]) -> int:
    kind = unit.lastgroup
    if kind == "repeat":
        return 2 if unit.group().startswith("double") else 3
    if kind == "words":
        return len(_NUMBER_WORD.findall(unit.group()))
    return len(unit.group()) if kind == "digits" else 1


def _phone_span(masked: str, start: int, end: int) -> tuple[int, int, str]:
    while start and masked[start - 1] in "+(":
        start -= 1  # "+44 ..." and "(020) ..." begin with their sign
    return start, end, "phone"
