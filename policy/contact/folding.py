"""Folding: the copy of a message every detector reads, and the way back to the original.

Compatibility-decomposed, marks and invisible characters dropped, look-alikes and Unicode
digits mapped to ASCII, lower case; each folded character remembers where it came from.
"""

from __future__ import annotations

import unicodedata

# Letters from other scripts that pass for Latin ones, by the letter they imitate, in both
# cases. Escapes, not the letters, so that the table can be checked without a font that
# tells them apart.
_LOOKALIKES = str.maketrans(
    {
        char: latin
        for latin, chars in {
            "a": "\u0430\u0410\u03b1\u0391\u0251",
            "b": "\u0432\u0412\u044c\u042c\u03b2\u0392",
            "c": "\u0441\u0421\u03f2\u03f9",
            "d": "\u0501\u0500\u0111",
            "e": "\u0435\u0415\u03b5\u0395",
            "g": "\u0261",
            "h": "\u04bb\u04ba\u043d\u041d\u0397",
            "i": "\u0456\u0406\u03b9\u0399\u0131\u0269",
            "j": "\u0458\u0408",
            "k": "\u043a\u041a\u03ba\u039a",
            "l": "\u04cf\u04c0\u0142",
            "m": "\u043c\u041c\u039c",
            "n": "\u043f\u041f\u03b7\u039d",
            "o": "\u043e\u041e\u03bf\u039f\u00f8",
            "p": "\u0440\u0420\u03c1\u03a1",
            "q": "\u051b\u051a",
            "r": "\u0433\u0413",
            "s": "\u0455\u0405",
            "ss": "\u00df",
            "t": "\u0442\u0422\u03c4\u03a4",
            "u": "\u03c5",
            "v": "\u03bd",
            "w": "\u051d\u051c\u03c9",
            "x": "\u0445\u0425\u03c7\u03a7",
            "y": "\u0443\u0423\u03b3\u03a5\u04af",
            "z": "\u0396",
        }.items()
        for char in chars
    }
)
_MARKS = frozenset({"Mn", "Me"})
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")  # Hangul fillers: letters, but blank
_APOSTROPHES = frozenset("\u2018\u2019\u201b\u02bc\u02b9\u2032")
_FULL_STOPS = frozenset("\u3002\u2024\ufe52")


def fold(text: str) -> tuple[str, list[int]]:
    """The folded text, and for each of its characters the index it came from in `text`."""
    parts: list[str] = []
    origin: list[int] = []
    for index, char in enumerate(text):
        folded = _fold_char(char)
        parts.append(folded)
        origin.extend([index] * len(folded))
    return "".join(parts), origin


def _fold_char(char: str) -> str:
    if " " <= char <= "~":
        return char.lower()
    if char.isspace():
        return char if char in "\t\n\r" else " "
    if unicodedata.category(char)[0] == "C" or char in _BLANK_LETTERS:
        return ""  # zero-width and other invisible characters, soft hyphen, controls
    out: list[str] = []
    for part in unicodedata.normalize("NFKD", char):
        if unicodedata.category(part) in _MARKS:
            continue
        # Look-alikes before lower case: capital eta is an H, small eta an n.
        for low in part.translate(_LOOKALIKES).lower():
            if unicodedata.category(low) not in _MARKS:  # "İ".lower() is "i" and a dot
                out.append(_fold_symbol(low))
    return "".join(out)


def _fold_symbol(char: str) -> str:
    if char.isascii():
        return char
    category = unicodedata.category(char)
    if category == "Nd":
        return str(unicodedata.decimal(char))  # Arabic-Indic, Devanagari... digits
    if category == "Pd" or char == "\u2212":
        return "-"
    if char in _APOSTROPHES:
        return "'"
    if char in _FULL_STOPS:
        return "."
    return " " if char.isspace() else char


def original(text: str, origin: list[int], start: int, end: int) -> str:
    """The original text of folded characters ``start`` to ``end``."""
    return text[origin[start] : origin[end - 1] + 1]
