"""Numbers that are no phone numbers: prices, dates, times, years, sizes, quantities with a
unit, coordinates, postcodes, ids.

They are set aside (masked) before digits are joined into phone numbers. Each shape must
stand alone: a date directly followed by ".34" is part of something longer, and a price
next to more digits ("€ 612 345 678") is a phone number with a currency sign added.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# Standing alone: no digit directly before or after, nor one behind a dot, slash or dash.
_ALONE_BEFORE = r"(?<!\d)(?<!\d[./:-])"
_ALONE_AFTER = r"(?!\d)(?![./:-]\d)"
# Standing alone in a list: no digit within three other characters (not letters) either way.
_LIST_BEFORE = r"(?<!\d)(?<!\d\W)(?<!\d\W\W)(?<!\d\W\W\W)"
_LIST_AFTER = r"(?!\W{0,3}\d)"

# Dates -------------------------------------------------------------------------------
_D = r"(?:0?[1-9]|[12]\d|3[01])"
_M = r"(?:0?[1-9]|1[0-2])"
_Y4 = r"(?:19|20)\d\d"
_Y = rf"(?:{_Y4}|\d\d)"


def _dmy(sep: str) -> str:  # day-month-year or month-day-year
    return rf"(?:{_D}{sep}{_M}|{_M}{sep}{_D}){sep}{_Y}(?!\d)"


_DMY_SLASH, _DMY_DOT, _DMY_DASH = _dmy("/"), _dmy(r"\."), _dmy("-")
_DATE_SD = rf"(?:{_Y4}/{_M}/{_D}|{_Y4}\.{_M}\.{_D}|{_DMY_SLASH}|{_DMY_DOT}|{_D}/{_M}|{_M}/{_D})"
_DATE_DASH = rf"(?:{_Y4}-{_M}-{_D}|{_DMY_DASH})"
# Alone, or in a range of dates ("12/05-14/05"): "06.12.34.56.78" holds no date.
_DATES = re.compile(
    rf"{_ALONE_BEFORE}(?:{_DATE_SD}(?!\d)(?:\s*-\s*{_DATE_SD}(?!\d))?|{_DATE_DASH}(?!\d))"
    rf"{_ALONE_AFTER}"
)
# Times, alone or as a range: 10:30, 10.30, 10h30, 18h, 10:30 am, 10:30-12:00, 9h à 12h.
_TIME = r"(?:[01]?\d|2[0-3])(?:[:.h][0-5]\d(?:[:.][0-5]\d)?|h(?![a-z]))(?:\s?[ap]\.?m\b\.?)?"
_TIMES = re.compile(
    rf"{_ALONE_BEFORE}{_TIME}(?:\s*(?:-|to|till|until|a|au|bis)\s*{_TIME})?(?!\d)(?![:.]\d)"
)
# Years, alone or in a list or range: 1998, 1990-2024, 2019/20, 1960, 1970 and 1980.
_LIST_SEP = r"(?:\s*[-/,;&+]\s*|\s+(?:and|et|or|ou|und|oder|to|till|a|au|bis)\s+)"
_YEARS = re.compile(rf"{_LIST_BEFORE}{_Y4}(?:{_LIST_SEP}(?:{_Y4}|\d\d)(?!\d))*+{_LIST_AFTER}")
# Timestamps in the names of photos, which are often a message's whole body:
# IMG_20240512_103000.jpg, IMG-20240512-WA0001.jpg, Screenshot_2024-05-12-10-30-00-123.png.
_TIMESTAMPS = re.compile(
    r"(?<!\d)(?:19|20)\d\d(?P<s>[-_.]?)(?:0[1-9]|1[0-2])(?P=s)(?:0[1-9]|[12]\d|3[01])"
    r"(?:[-_t ]?(?:[01]\d|2[0-3])(?P<t>[-_.:]?)[0-5]\d(?:(?P=t)[0-5]\d)?(?:[-_.]?\d{1,3})?)?"
    r"(?!\d)"
)

# Prices -------------------------------------------------------------------------------
_CURRENCY = (
    r"(?:[£$€¥₹₽₩₺₴]|(?<![a-z])(?:usd|eur|gbp|chf|jpy|cad|aud|pln|sek|nok|dkk|czk|huf|ron"
    r"|rub|uah|inr|cny|euros?|dollars?|pounds?|bucks|quid|kr|balles|francs?)(?![a-z]))"
)


def _amount(name: str) -> str:
    """Up to seven digits, grouped by one separator used throughout (1 250 000, 1,250), or
    not; a leading zero makes it something else (a phone number)."""
    return (
        rf"(?:[1-9](?P<{name}>[ .,'])\d{{3}}(?P={name})\d{{3}}|[1-9]\d{{0,2}}[ .,']\d{{3}}"
        r"|[1-9]\d{0,6}|0)(?!\d)"
    )


_CENTS = r"(?:[.,](?:\d\d?|-)(?!\d))"  # 9.99, 9,5, 9.- and 9,- (Swiss and German)


def _price(n: int) -> str:
    """An amount with a currency, or with cents ("99.99"), as one piece."""
    return (
        rf"(?>{_CURRENCY}\s?{_amount(f'a{n}')}{_CENTS}?|{_amount(f'b{n}')}{_CENTS}?\s?{_CURRENCY}"
        rf"|{_amount(f'c{n}')}[.,]\d\d(?!\d))"
    )


# Prices, or a list of them ("£12.50, 8.00 and 4.99"), with no other digits near: a list
# whose neighbour is a bare number ("€12, 34, 56, 78") is a phone number in disguise. A
# currency is a boundary of its own: digits before "£45" or after "45 €" are no neighbours.
_CURRENCY_SIGNS = "£$€¥₹₽₩₺₴"
_PRICES = re.compile(
    rf"(?:(?=[{_CURRENCY_SIGNS}a-z]){_price(1)}|{_LIST_BEFORE}{_price(2)})"
    rf"(?:(?:\s*[,;/&+-]\s*|\s+(?:and|et|or|ou|und)\s+|\s+){_price(3)})*+"
    rf"(?:{_LIST_AFTER}|(?<=[{_CURRENCY_SIGNS}a-z]))"
)

# Sizes, postcodes, ids ----------------------------------------------------------------
_SIZE = r"(?:[1-9]\d{0,3}(?:[.,]\d{1,2})?|0[.,]\d{1,2})"
_BY = r"\s*[x\u00d7*]\s*"  # x, the multiplication sign or *
_UNIT = r"(?:mm|cm|dm|m|km|in|inch|inches|ft|feet|px|pouces|po|\"|'')(?![a-z])"
# 120 x 80 x 45 cm, 10x20 cm, and screens without a unit (1920x1080), but no link of a
# longer chain ("0791*112*3456").
_NOT_AFTER_BY = r"(?<!\d[x\u00d7*])(?<!\d\s[x\u00d7*])(?<!\d[x\u00d7*]\s)(?<!\d\s[x\u00d7*]\s)"
_SIZES = re.compile(
    rf"{_ALONE_BEFORE}{_NOT_AFTER_BY}(?:{_SIZE}{_BY}{_SIZE}(?:{_BY}{_SIZE})?\s?{_UNIT}"
    rf"|[1-9]\d{{0,3}}{_BY}[1-9]\d{{0,3}}(?!{_BY}\d)){_ALONE_AFTER}"
)
_ZIP_PLUS_FOUR = re.compile(rf"{_ALONE_BEFORE}\d{{5}}-\d{{4}}{_ALONE_AFTER}")
# Quantities with a unit: 45 000 miles, 1 200 km, 2,5 kg, 85%, alone or after a year ("2018,
# 45 000 miles"). The unit ends the number, so only what precedes must stand alone.
_QUANTITY_UNIT = (
    r"(?:(?:km|kms|kilomet(?:re|er)s?|mi|miles?|m|metres?|meters?|cm|mm|m2|sq\s?ft|sqft|ft|feet"
    r"|inch(?:es)?|kg|kgs|kilos?|g|gr|grams?|grammes?|lbs?|oz|l|litres?|liters?|ml|cl|hp|bhp"
    r"|ch|cv|cc|kw|kwh|wh|w|watts?|v|volts?|mah|gb|tb|mb|go|mph|kmh|km/h|rpm|h|hrs?|hours?"
    r"|heures?|mins?|minutes?|days?|jours?|weeks?|semaines?|months?|mois|years?|yrs?|ans"
    r"|owners?|proprietaires?|pcs|pieces?|units?|items?|pages?|views?|vues)(?![a-z0-9])|%)"
)
_QUANTITY = rf"{_amount('q')}(?:[.,]\d{{1,3}})?\s?{_QUANTITY_UNIT}"
_QUANTITIES = re.compile(rf"{_LIST_BEFORE}(?:{_Y4}(?:\s*[,;]\s*|\.\s+|\s+))?{_QUANTITY}")
# Decimal coordinates, latitude then longitude: "48.8584, 2.2945", "-33.8568 151.2153".
_COORDINATES = re.compile(
    rf"{_ALONE_BEFORE}-?(?:[1-8]\d|\d)\.\d{{4,8}}\s?°?\s?[ns]?\s*[,;]?\s*"
    rf"-?(?:1[0-7]\d|[1-9]\d|\d)\.\d{{4,8}}(?:\s?°)?(?:\s?[ew](?![a-z]))?{_ALONE_AFTER}"
)
# Order, tracking and reference numbers of up to seven digits, named as such: "order
# #1234567", "commande n° 1234567", "ref: 123456", "#1234567".
_ID_LABEL = (
    r"(?<![a-z])(?:orders?|items?|articles?|tracking|invoices?|reference|ref|serial|model|part"
    r"|lot|sku|parcels?|package|ticket|booking|reservation|commande|cmd|suivi|colis"
    r"|factures?|serie|modele|piece|dossier|annonce|listing|case)(?![a-z])"
    r"(?:\s*(?:number|no|nr|num|numero|n|id|code))?"
)
_IDS = re.compile(
    rf"(?:{_ID_LABEL}[\s.:#°-]{{0,4}}|(?<![\w#])#\s?|(?<![a-z])n\s?[°o]\.?\s?)"
    rf"(?P<id>(?<!\d)\d{{1,7}}){_ALONE_AFTER}"
)
_ISBN = re.compile(r"isbn(?:-?1[03])?\s*:?\s*(?P<isbn>\d[\d -]{8,16}[\dx])(?![\w-])")

_CURRENCY_NAMES = "usd eur gbp chf jpy cad aud pln sek nok dkk czk huf ron rub uah inr cny"
# Each shape with what must be in the text for it to be there (cheap to look for).
_MASKS = (
    (_DATES, re.compile(r"[0-9][./-][0-9]")),
    (_TIMES, re.compile(r"[0-9][:.h]")),
    (_YEARS, re.compile(r"(?:19|20)[0-9][0-9]")),
    (_TIMESTAMPS, re.compile(r"(?:19|20)[0-9][0-9]")),
    (_PRICES, re.compile(r"[0-9][.,][0-9]")),
    (
        _PRICES,
        re.compile(
            "|".join(map(re.escape, [*"£$€¥₹₽₩₺₴", *_CURRENCY_NAMES.split(), "euro", "dollar"]))
            + "|pound|bucks|quid|kr|balles|franc"
        ),
    ),
    (_SIZES, re.compile(r"[0-9]\s*[x\u00d7*]")),
    (_ZIP_PLUS_FOUR, re.compile(r"[0-9]-[0-9]")),
    (_QUANTITIES, re.compile(r"[0-9]\s?(?:[a-z]|%)")),
    (_COORDINATES, re.compile(r"[0-9]\.[0-9]{4}")),
)


def ordinary_numbers(folded: str, start: int = 0, end: int | None = None) -> Iterator[range]:
    """Spans of `folded` (between ``start`` and ``end``) that hold numbers but no phone."""
    end = len(folded) if end is None else end
    done: set[re.Pattern[str]] = set()
    for pattern, trigger in _MASKS:
        if pattern in done or not trigger.search(folded, start, end):
            continue
        done.add(pattern)
        for match in pattern.finditer(folded, start, end):
            yield range(*match.span())
    for match in _IDS.finditer(folded, start, end):
        yield range(*match.span("id"))
    if "isbn" in folded[start:end]:
        for match in _ISBN.finditer(folded, start, end):
            if _isbn_checks(match.group("isbn")):
                yield range(*match.span("isbn"))


def _isbn_checks(isbn: str) -> bool:
    digits = [10 if c == "x" else int(c) for c in isbn if c.isdigit() or c == "x"]
    if len(digits) == 13:
        return sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10 == 0
    if len(digits) == 10:
        return sum(d * (10 - i) for i, d in enumerate(digits)) % 11 == 0
    return False
