"""Phone numbers: runs of digits and number words with anything but words between them,
after prices, dates and other ordinary numbers are set aside; and what a number split across
messages must be (see across.py)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from .domains import trie
from .limits import MASK_BUDGET, MAX_CANDIDATES
from .numbers import ordinary_numbers
from .numwords import ALTERNATION, SINGLES, TEENS, TENS, TENS_WITH_ET, digit_count

# Eight digits: a whole national number almost everywhere, longer than prices, years and
# short order numbers. Six or seven count after a phone cue word or a country code, where
# libphonenumber agrees that they can be a number.
_PHONE_MIN_DIGITS = 8
_SHORT_MIN_DIGITS = 6

BREAK = "\x00"  # what claimed text is masked with: it separates numbers
GAP = "\x01"  # what ordinary numbers are masked with: they are no digits, but join them

_LETTER = r"[^\W\d_]"  # a letter of any script


def _unit() -> str:
    """One piece of a number: digits (with O for 0 and l or I for 1 among them: "O7911
    l23456"), "double seven", "vingt et un", or number words (also run together,
    "zeroseven").

    The alternatives are grouped by their first character, each group beginning with it,
    so that the search skips in C every position where no piece can begin and tries only
    the group for the character it is at; what must not precede a piece (a letter) is
    checked once, after that character, and the words run together after a word are
    written once, for all of them.
    """
    end = rf"(?!{_LETTER})"
    words = [*SINGLES, *TEENS, *TENS]
    groups: dict[str, list[str]] = {}
    for first in sorted({word[0] for word in words}):
        rests = [word[1:] for word in words if word[0] == first]
        rest = trie(r for r in rests if r)
        groups.setdefault(first, []).append(f"{rest}?" if "" in rests else rest)
    for c in "oil":
        groups.setdefault(c, []).insert(0, rf"[oil]*+[0-9][0-9oil]*+{end}")
    single = trie(SINGLES)
    for word in ("double", "triple"):
        groups[word[0]].insert(0, rf"{word[1:]}[\s-]*+(?:{single}|[0-9]){end}(?![0-9])")
    for tens in TENS_WITH_ET:
        groups[tens[0]].insert(0, rf"{tens[1:]}[\s-]+et[\s-]+(?:un|une|onze){end}")
    # Digits one by one: a branch whose every alternative begins with a plain character is
    # what lets the search skip in C. A piece never begins right after a digit (pieces take
    # every digit there is), so "1500" is not tried again at "500" and "00".
    alternatives = [rf"{d}(?<![0-9].)[0-9]*+(?:[0-9oil]*+{end})?" for d in "0123456789"]
    alternatives += [
        rf"{first}(?<!{_LETTER}.)(?:{'|'.join(rest)})" for first, rest in sorted(groups.items())
    ]
    # After a piece that ends with a letter (a word): more words run together, then no
    # letter. Every other alternative has made sure of that already.
    glued = trie(words)
    return rf"(?:{'|'.join(alternatives)})(?:(?<=[a-z])(?:{glued})*+{end}|(?<![a-z]))"


_UNIT = _unit()
# What may stand between the pieces of one number: anything but a word (spaces and line
# breaks of any length, punctuation, emoji, masked ordinary numbers), up to eight letters
# glued between digits ("0791a112b3456", "07911abcd123456": prose never glues a word to
# digits on both sides) unless they are number words, a single letter standing alone
# ("0791 a 112"), or a separator written as a word ("06 dot 12 dot 34", "zéro six point
# douze"). Claimed text (a link, an email) and any other word end it.
_SEPARATOR_WORDS = "(?:dot|point|punkt|punto|dash|tiret|slash|space|espace)"
_NUMBER_WORDS = trie([*SINGLES, *TEENS, *TENS])
_PUNCTUATION = rf"[^\w{BREAK}]"
_GLUED = rf"(?<=[0-9])(?!{_NUMBER_WORDS}++[0-9]){_LETTER}{{1,8}}(?=[0-9])"
_WORD_GAP = rf"_|{_GLUED}|(?<![^\W_])(?:(?!o){_LETTER}|{_SEPARATOR_WORDS})(?![^\W_])"
_GAP = rf"(?:{_PUNCTUATION}|{_WORD_GAP})*+"
# One more piece of a run, after its gap: each branch takes exactly what _GAP then _UNIT
# would, without trying every alternative of _GAP at every piece. The gap's punctuation
# comes first (it takes it whatever follows); after it the piece is tried at once, plain
# digits first; right after a digit, a letter glued before digits (no letter but o is a
# number word); else more of the gap (at least one piece of it after punctuation, as the
# piece there was just tried), then the piece.
_DIGITS = r"[0-9]++(?![oil])"
_STEP = (
    rf"{_PUNCTUATION}*+(?:(?<={_PUNCTUATION})(?:{_DIGITS}|{_UNIT})"
    rf"|(?<=[0-9])[a-np-z](?=[0-9]){_DIGITS}"
    rf"|(?:{_WORD_GAP}){_GAP}{_UNIT}"
    rf"|(?<!{_PUNCTUATION}){_UNIT})"
)
# Two pieces or more, or one of six characters or more: anything shorter holds too few
# digits to be judged, and is better not made a match at all.
_RUN = re.compile(rf"{_UNIT}(?:(?:{_STEP})++|(?<=[a-z0-9]{{6}}))")
_UNIT_RE = re.compile(_UNIT)
_HAS_LETTER = re.compile(_LETTER)
_DIGITS_TO_GAP = str.maketrans(dict.fromkeys("0123456789", GAP))
_OIL = str.maketrans("oil", "011")
_OIL_DIGITS = re.compile(r"[0-9oil]+")
_ET = re.compile(r"[\s-]et[\s-]")
_ALPHABETIC_WORDS = re.compile(ALTERNATION)
_JOINED = re.compile(r"[\s-]{0,3}")
_LEAD = re.compile(r"[+(][\s+(]*\Z")  # "+44 ...", "(020) ...", "+ 44": part of the number

# Words that say a number is a phone number: "call 555 1234", "mon numéro : 612 345".
_CUE = re.compile(
    r"(?<![a-z])(?:call|calls|calling|ring|tel(?! aviv)|tele|telephone|phone|mobile|mob|cell"
    r"|cellphone"
    r"|sms|text|txt|whatsapp|numero|num|portable|appelle[rsz]?|appeler|appelez|joindre"
    r"|joignable|my number|our number)(?![a-z])"
)
_CUE_WINDOW = 40
_MARGIN = 24  # after a run, for a currency or a unit ("45 dollars", "120 x 80 cm")
# Regions whose numbering plans confirm a short candidate (libphonenumber's data).
_REGIONS = ("GB", "US", "FR", "DE", "ES", "IT", "NL", "BE", "CH", "AT", "IE", "PL")
_POSSIBLE = (ValidationResult.IS_POSSIBLE, ValidationResult.IS_POSSIBLE_LOCAL_ONLY)
_MAX_LOOKUPS = 16  # per message; beyond that a short candidate with a cue counts


def masked(folded: str, claims: list[tuple[int, int, str | None]]) -> str:
    """The folded text with what is claimed blanked out, so that numbers stop there."""
    if not claims:
        return folded
    pieces, done = [], 0
    for start, end, _ in claims:
        pieces += [folded[done:start], BREAK * (end - start)]
        done = end
    pieces.append(folded[done:])
    return "".join(pieces)


def phones(text: str) -> Iterator[tuple[int, int, str | None]]:
    """Runs of number pieces with at least 8 digits (6 with a cue or a country code), once
    the ordinary numbers among them are masked.

    At most MAX_CANDIDATES runs of six digits or more are judged one by one; the rest of a
    message with more than that is one finding. Ordinary numbers are recognised around runs
    (with their surroundings, nearby ones together) of MASK_BUDGET characters in all; past
    that, and in a longer run, they count like any digits.
    """
    candidates: list[tuple[re.Match[str], int]] = []
    for run in _RUN.finditer(text):
        start, end = run.span()
        if end - start < _SHORT_MIN_DIGITS:
            continue
        count = _count(text, start, end)
        if count < _SHORT_MIN_DIGITS:
            continue
        if len(candidates) == MAX_CANDIDATES:
            yield _span(text, start, len(text))
            break
        candidates.append((run, count))
    lookups = [0]
    windows = iter(_windows(text, [run.span() for run, _ in candidates]))
    window_start, window_end, window = next(windows, (0, 0, None))
    for run, count in candidates:
        while window_end < run.end():
            window_start, window_end, window = next(windows)
        if window is None:
            parts, judged, offset = [run], text, 0  # judged as it stands
        else:
            parts = list(_RUN.finditer(window, *(i - window_start for i in run.span())))
            judged, offset = window, window_start
        for part in parts:
            digits = count if part is run else _count(judged, *part.span())
            if digits >= _PHONE_MIN_DIGITS or (
                digits >= _SHORT_MIN_DIGITS and _confirmed(judged, part, lookups)
            ):
                first, last, kind = _span(judged, *part.span())
                yield first + offset, last + offset, kind


def _windows(text: str, runs: list[tuple[int, int]]) -> list[tuple[int, int, str | None]]:
    """The surroundings of the runs, nearby ones merged, each with its ordinary numbers
    masked while the budget lasts (None past it)."""
    merged: list[list[int]] = []
    for start, end in runs:
        start, end = max(0, start - _CUE_WINDOW), min(len(text), end + _MARGIN)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    budget = MASK_BUDGET
    windows: list[tuple[int, int, str | None]] = []
    for start, end in merged:
        masked = None
        if end - start <= budget:
            budget -= end - start
            masked = _mask_ordinary(text, start, end)
        windows.append((start, end, masked))
    return windows


def _mask_ordinary(text: str, start: int, end: int) -> str:
    """`text` from ``start`` to ``end`` with the digits of its ordinary numbers turned into
    gaps (their words stay words)."""
    spans = sorted(ordinary_numbers(text, start, end), key=lambda span: span.start)
    pieces, done = [], start
    for span in spans:
        if span.stop <= done:
            continue
        begin = max(done, span.start)
        pieces += [text[done:begin], text[begin : span.stop].translate(_DIGITS_TO_GAP)]
        done = span.stop
    pieces.append(text[done:end])
    return "".join(pieces)


def _count(text: str, start: int, end: int) -> int:
    """How many digits the pieces between ``start`` and ``end`` stand for (up to 8)."""
    run = text[start:end]
    if not _HAS_LETTER.search(run):
        return sum(map(run.count, "0123456789"))
    count = 0
    words: list[tuple[str, bool]] = []
    previous_end = start
    for unit in _UNIT_RE.finditer(text, start, end):
        kind = _kind(unit.group())
        joined = _JOINED.fullmatch(text, previous_end, unit.start()) is not None
        previous_end = unit.end()
        if kind == "words":
            pieces = _ALPHABETIC_WORDS.findall(unit.group())
            words += [(piece, joined or i > 0) for i, piece in enumerate(pieces)]
            if len(words) >= 2 * _PHONE_MIN_DIGITS:
                return _PHONE_MIN_DIGITS  # two words make at least one digit
            continue
        count += digit_count(words)
        words = []
        if kind == "repeat":
            count += 2 if unit.group().startswith("double") else 3
        elif kind == "et":
            count += 2
        else:
            count += len(unit.group())
        if count >= _PHONE_MIN_DIGITS:
            return count
    return count + digit_count(words)


def _kind(unit: str) -> str:
    if unit[0].isdigit() or _OIL_DIGITS.fullmatch(unit):
        return "digits"
    if unit.startswith(("double", "triple")):
        return "repeat"
    return "et" if _ET.search(unit) else "words"


def _confirmed(text: str, run: re.Match[str], lookups: list[int]) -> bool:
    """Whether a six- or seven-digit run is a phone number: after a country code ("+") or a
    cue word, libphonenumber finds it possible."""
    lead = _LEAD.search(text, max(0, run.start() - 4), run.start())
    international = lead is not None and "+" in lead.group()  # a bracket alone is no code
    cue = _CUE.search(text, max(0, run.start() - _CUE_WINDOW), run.start())
    if not international and cue is None:
        return False
    run_text = run.group().translate(_OIL)
    if _HAS_LETTER.search(run_text):
        return cue is not None  # number words after a cue word are no accident
    digits = "".join(c for c in run_text if c.isdigit())
    lookups[0] += 1
    if lookups[0] > _MAX_LOOKUPS:
        return True  # a message full of candidates gets no benefit of the doubt
    return _possible(digits, international) or (cue is not None and _possible(digits, False))


@functools.lru_cache(maxsize=4096)
def _possible(digits: str, international: bool) -> bool:
    try:
        if international:
            number = phonenumbers.parse("+" + digits, None)
            return phonenumbers.is_possible_number(number)
        for region in _REGIONS:
            number = phonenumbers.parse(digits, region)
            if phonenumbers.is_possible_number_with_reason(number) in _POSSIBLE:
                return True
    except NumberParseException:
        return False
    return False


def _span(text: str, start: int, end: int) -> tuple[int, int, str]:
    lead = _LEAD.search(text, max(0, start - 4), start)
    return (lead.start() if lead else start), end, "phone"


# Numbers split across messages (see across.py) ------------------------------------------

_STARTS_WITH_NUMBER = re.compile(rf"{_GAP}{_UNIT}")
# What a split number must be for libphonenumber: after "+" or "00", a valid international
# number; after a trunk prefix "0", a valid national one; otherwise a valid North American
# one (ten digits, or eleven after a 1). After a cue word, a possible one, as in a message.
_SPLIT_DIGITS = range(_PHONE_MIN_DIGITS, 16)  # E.164 numbers have at most 15 digits
_INTERNATIONAL_DIGITS = range(_SHORT_MIN_DIGITS, 16)


def has_number(folded: str) -> bool:
    """Whether a message holds a piece of a number (a digit, a number word)."""
    return _UNIT_RE.search(folded) is not None


def starts_with_number(folded: str) -> bool:
    """Whether a message begins with a piece of a number, only a gap before it."""
    return _STARTS_WITH_NUMBER.match(folded) is not None


def digit_groups(folded: str, start: int, end: int) -> list[tuple[int, int, str]] | None:
    """The groups of digits of the number between ``start`` and ``end``, with their spans;
    None if it holds number words (which are no accident, and have no digits to check)."""
    groups = []
    for unit in _UNIT_RE.finditer(folded, start, end):
        if _kind(unit.group()) != "digits":
            return None
        groups.append((unit.start(), unit.end(), unit.group().translate(_OIL)))
    return groups


def split_confirmed(folded: str, start: int, digits: str, lookups: list[int]) -> bool:
    """Whether ``digits``, beginning at ``start`` of `folded` and read across messages, are
    a phone number: see _SPLIT_DIGITS. ``lookups`` counts libphonenumber's work."""
    lead = _LEAD.search(folded, max(0, start - 4), start)
    international = lead is not None and "+" in lead.group()
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    if international:
        return len(digits) in _INTERNATIONAL_DIGITS and _valid("+" + digits, None, lookups)
    cue = _CUE.search(folded, max(0, start - _CUE_WINDOW), start) is not None
    if len(digits) not in (_INTERNATIONAL_DIGITS if cue else _SPLIT_DIGITS):
        return False
    if digits.startswith("0"):
        if any(_valid(digits, region, lookups) for region in _REGIONS):
            return True
    elif len(digits) in (10, 11) and _valid(digits, "US", lookups):
        return True
    lookups[0] += 1
    return cue and _possible(digits, False)


def _valid(digits: str, region: str | None, lookups: list[int]) -> bool:
    lookups[0] += 1
    return _valid_number(digits, region)


@functools.lru_cache(maxsize=4096)
def _valid_number(digits: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(digits, region))
    except NumberParseException:
        return False
