"""IBANs, by shape: a country with IBANs, its length, and enough digits."""

from __future__ import annotations

import re
from collections.abc import Iterator

from .limits import MAX_CANDIDATES

# Registered IBAN lengths by country (SWIFT IBAN registry).
_IBAN_LENGTHS = {
    "no": 15,
    "be": 16,
    **dict.fromkeys("dk fi fk fo gl nl sd".split(), 18),
    **dict.fromkeys("mk si".split(), 19),
    **dict.fromkeys("at ba ee kz lt lu mn xk".split(), 20),
    **dict.fromkeys("ch hr li lv".split(), 21),
    **dict.fromkeys("bg bh cr de ge gb ie me rs va".split(), 22),
    **dict.fromkeys("ae gi il iq om so tl".split(), 23),
    **dict.fromkeys("ad cz es md pk ro sa se sk tn vg".split(), 24),
    **dict.fromkeys("ly pt st".split(), 25),
    **dict.fromkeys("is tr".split(), 26),
    **dict.fromkeys("bi dj fr gr it mc mr sm".split(), 27),
    **dict.fromkeys("al az by do gt hn hu lb ni pl sv cy".split(), 28),
    **dict.fromkeys("br eg ps qa ua".split(), 29),
    **dict.fromkeys("jo kw mu ye".split(), 30),
    **dict.fromkeys("mt sc".split(), 31),
    "lc": 32,
    "ru": 33,
}
# A country and check digits, beginning with a letter (so that the search skips in C every
# position where none can begin); then exactly the country's length in letters and digits,
# written together or split by single spaces or dashes, ending with a group.
_IBAN_START = re.compile(r"[a-z](?<![a-z0-9].)[a-z][0-9][0-9]")
_BODIES = {
    length: re.compile(rf"(?:[ -]?[a-z0-9]){{{length - 4}}}(?![a-z0-9])")
    for length in set(_IBAN_LENGTHS.values())
}
_IBAN_MIN_DIGITS = 8


def ibans(folded: str) -> Iterator[tuple[int, int, str | None]]:
    """IBAN-shaped strings, with or without a valid checksum.

    The mod-97 checksum is not required: a mistyped or deliberately altered IBAN still
    asks to be paid off the platform, and the other side can fix one digit. Product codes
    are kept out by shape instead: a country with IBANs, check digits 02 to 98 (the only
    ones the standard issues), exactly that country's length, whole groups (written
    together, or split by single spaces or dashes) and at least 8 digits after the check
    digits.
    """
    examined = 0
    for match in _IBAN_START.finditer(folded):
        start = match.start()
        length = _IBAN_LENGTHS.get(folded[start : start + 2])
        if length is None or not 2 <= int(folded[start + 2 : start + 4]) <= 98:
            continue
        examined += 1
        if examined > MAX_CANDIDATES:
            yield start, len(folded), "iban"  # past that, the rest is one finding
            return
        body = _BODIES[length].match(folded, match.end())
        if body and sum(c.isdigit() for c in body.group()) >= _IBAN_MIN_DIGITS:
            yield start, body.end(), "iban"
