"""Whether an upload may go through, judged from its bytes alone (never from what the client
declared): `judge_upload(content, allowed_types, text_judge)` -> None, or the rule's reason.

    type      magic numbers (JPEG, PNG, GIF, WebP, PDF), else text: UTF-8, no NUL, at most 1%
              control characters; JSON (by its shape), HTML, SVG, XML, CSV, plain. A type not
              in `allowed_types` is refused; HTML and SVG always are.
    carriers  archive and program signatures in the first 512 KiB (an archive behind a
              disguise header), the last 64 KiB (where ZIP readers find the end record) and
              image metadata; tar headers at any 512-byte block (GNU tar skips to them). Text
              needs no such search: every archive or program header holds a NUL byte.
    images    followed to their real end, after which only NUL/whitespace may come: JPEG by
              its length-prefixed segments, then entropy-coded data to the next marker (an
              EXIF thumbnail's SOI/EOI lie inside APP1, skipped whole; JPEGs appended after
              EOI, as phones' MPF and Ultra HDR gain maps, are followed, and a Samsung SEF
              trailer under 64 KiB is taken); PNG by chunks to IEND; GIF by blocks to its
              trailer; WebP by its RIFF length. HTML or SVG in an image's or PDF's first KiB
              is refused.
    PDF       its syntax outside streams, and its object streams inflated, may not name
              /JavaScript, /JS, /EmbeddedFile(s), /EF, /Launch, /RichMedia or /XFA, nor spell
              one (or /ObjStm) with escapes (`/J#61vaScript`); only whitespace may follow the
              last %%EOF.
    text      allowed text goes to `text_judge` whole (JSON with its strings decoded in place,
              so `\\u0030` cannot hide a digit); with a judge, text over 1 MiB is refused
              (the judge's own time is the caller's: it may get 1 MiB of text).
    metadata  with a judge, the human-written fields of image and PDF metadata (comments,
              captions, descriptions, titles, authors, keywords) go to it, 256 KiB at most;
              machine fields (Make, Model, Software, dates, IDs) do not: policy.upload_metadata.

Chance: every signature fixes at least 54 bits (magics with version, CPU or field bytes), so
16 MiB of compressed data holds one with odds under 2^-26; short magics (PK, MZ, gzip) count
only right after an image's end, and names and markup are never sought in pixel or stream
data: a photo is refused for its structure, never for what its pixels happen to hold.
Cost: the whole file is only touched by rsplit/count/memchr, strided slices and walks with a
step cap (regexes run on bounded regions, JPEG's marker search behind the FF cap); past a
cap (20,000 segments, chunks or streams, 512 KiB of metadata past the head, 1 MiB of PDF
syntax, 4 MiB of PDF XMP, 50,000 JSON strings, FF bytes over 1/32 of a JPEG, the metadata
module's caps) a file is refused as too complex.
Not detected: bytes in pixel or stream data past the first 512 KiB (unrar and 7-Zip scan the
first 2 and 8 MiB), dictionaries a crafted PDF hides between stream keywords mimicked in
strings, gzip/xz/bzip2 inside files (their tools read offset 0), contact details drawn in an
image, written in a PDF's pages or in machine metadata fields (in any metadata without a
judge: the Synapse module); phones' larger trailers (motion-photo MP4s) are trailing data.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from .upload_metadata import TooComplex, Unreadable, metadata_text, stream_data

JSON = "application/json"
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"%PDF-", 0, "application/pdf"),
    (b"WEBP", 8, "image/webp"),  # after "RIFF" and a length; last, as the others are at 0
)
KNOWN_UPLOAD_TYPES = frozenset({t for _, _, t in _MAGIC} | {JSON})
NEVER_ALLOWED = frozenset({"text/html", "image/svg+xml"})
MAX_TEXT_BYTES = 1 << 20

NOT_ALLOWED = "This type of file is not allowed here."
MARKUP = "Web pages and SVG drawings are not allowed here."
TEXT_TOO_LARGE = "Text files over 1 MiB are not allowed here."
TEXT_BREAKS_RULES = "The file's text breaks the content rules."
CARRIES_FILES = "The file carries an archive or a program."
TRAILING_DATA = "The file has data after its end."
MALFORMED = "The file is not well-formed."
PDF_ACTIVE = "The PDF holds embedded files, scripts, launch actions or forms."
PDF_HIDDEN = "The PDF hides names behind escapes."
PDF_UNREADABLE = "The PDF's objects cannot be read."
TOO_COMPLEX = "The file is too complex to check."
METADATA_BREAKS_RULES = "The file's metadata breaks the content rules."

_HEAD, _ZIP_TAIL, _MAX_METADATA, _MAX_PDF_SYNTAX = 1 << 19, 65_557, 1 << 19, 1 << 20
_MAX_STREAMS, _MAX_STEPS, _MAX_JSON_ITEMS = 20_000, 20_000, 50_000
_PADDING = b"\x00\t\n\x0c\r "
_Region = tuple[int, int, bytes]  # start, end, and the JPEG marker, chunk type or GIF label


class _Refused(Exception): ...


def _need(ok: object, reason: str) -> None:
    if not ok:
        raise _Refused(reason)


_ZIP_METHOD = rb"[\x00\x08\x20\x28][\x00\x08\x09\x0c\x0e\x5d\x5f\x62\x63]\x00"  # flags, method
_CARRIED = tuple(
    re.compile(p, re.S)
    for p in (
        rb"PK(?:\x03\x04[\x0a-\x3f]\x00.|\x01\x02[\x00-\x3f][\x00-\x13][\x0a-\x3f]\x00.)"
        + _ZIP_METHOD
        + rb"|PK\x05\x06\x00{4}|PK\x06\x07\x00{4}",
        rb"PE\x00\x00(?:\x4c\x01|\x64\x86|\x64\xaa|\xc4\x01)[\x01-\x60]\x00.{12}[\xe0\xf0]\x00..\x0b[\x01\x02]",
        rb"Rar!\x1a\x07(?:\x00|\x01\x00)",
        rb"7z(?:\xbc\xaf\x27\x1c\x00[\x00-\x04]|(?<=\xfd7z)XZ\x00\x00[\x00\x01\x04\x0a])",
        rb"MSCF\x00{4}",
        rb"BZh[1-9]1AY&SY",
        rb"ustar(?:\x0000|  \x00)",
        rb"\x7fELF[\x01\x02][\x01\x02]\x01",
        rb"\xfe\xed\xfa[\xce\xcf][\x00\x01\x02]\x00\x00[\x07\x0c\x12]\x00{3}[\x01-\x0c]",  # Mach-O
        rb"\xfa\xed\xfe(?<=[\xce\xcf]\xfa\xed\xfe)[\x07\x0c\x12]\x00\x00[\x00-\x02][\x01-\x0c]\x00{3}",
        rb"\xca\xfe\xba\xbe\x00{3}[\x01-\x10][\x00\x01\x02]\x00\x00[\x07\x0c\x12]",
    )
)
# Weak magics, only taken where a region starts (the data after an image's end).
_STARTS = re.compile(rb"PK\x03\x04|\x1f\x8b\x08|BZh[1-9]|MZ|\x7fELF|Rar!|7z\xbc\xaf|\xfd7zXZ")
_MARKUP = (b"<!doctype html", b"<html", b"<svg", b"<script", b"<iframe", b"<body", b"<embed")
_CONTROLS = bytes(range(9)) + b"\x0b" + bytes(range(0x0E, 0x20)) + b"\x7f"
_USTAR = [bytes(int(x in w) for x in range(256)) for w in (b"u", b"s", b"t", b"a", b"r", b"\0 ")]


def _check_carriers(content: bytes, regions: list[_Region]) -> None:
    outside = [(max(a, _HEAD), b) for a, b, _ in regions if b > _HEAD]
    _need(sum(b - a for a, b in outside) <= _MAX_METADATA, TOO_COMPLEX)
    spans = [(content, 0, _HEAD), (content, max(_HEAD, len(content) - _ZIP_TAIL), len(content))]
    metadata = b"\n".join(content[a:b] for a, b in outside)
    for data, start, end in (*spans, (metadata, 0, len(metadata))):
        _need(not any(p.search(data, start, end) for p in _CARRIED), CARRIES_FILES)
    # "ustar" at offset 257 of any 512-byte block: a bitwise AND over strided columns.
    columns, found = len(content[262::512]), -1
    for k, table in enumerate(_USTAR):
        found &= int.from_bytes(content[257 + k :: 512][:columns].translate(table), "big")
    _need(columns == 0 or found == 0, CARRIES_FILES)


def _check_end(content: bytes, end: int | None) -> None:  # only padding after an image's end
    if rest := b"" if end is None else content[end:].lstrip(_PADDING):
        _need(not _STARTS.match(rest[:8]), CARRIES_FILES)
        raise _Refused(TRAILING_DATA)


# JPEG: markers with a length, entropy-coded data after SOS up to the next real marker.
_FILL = re.compile(rb"\xff+")
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _jpeg(content: bytes, regions: list[_Region]) -> None:
    n, start, steps = len(content), 0, 0
    _need(content.count(b"\xff") <= n // 32 + 4096, TOO_COMPLEX)  # honest data: about 1/256
    while True:  # the photo, then the images appended to it (each takes steps)
        i, scanning = start + 2, False
        while True:
            steps += 1
            _need(steps < _MAX_STEPS, TOO_COMPLEX)
            if scanning:
                if (m := _NEXT_MARKER.search(content, i)) is None:
                    return  # cut short inside the entropy-coded data
                i = m.start()
            fill = _FILL.match(content, i)
            if fill is None or fill.end() + 3 > n:
                _need(i >= n or fill is not None, MALFORMED)
                return  # cut short: nothing after the end to judge
            marker = content[j := fill.end()]
            if marker == 0xD9:
                break
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:
                i = j + 1
                continue
            length = content[j + 1] << 8 | content[j + 2]
            _need(marker not in (0x00, 0xD8) and length >= 2, MALFORMED)
            if 0xE0 <= marker <= 0xEF or marker == 0xFE:
                regions.append((j + 3, min(n, j + 1 + length), bytes((marker,))))
            i, scanning = j + 1 + length, scanning or marker == 0xDA
        end, start = j + 1, content.find(b"\xff\xd8\xff", j + 1, j + 4097)  # an appended image?
        if start < 0 or content[end:start].strip(_PADDING):
            return _check_end(content, n if _samsung_trailer(content[end:]) else end)


def _samsung_trailer(tail: bytes) -> bool:
    """A Samsung SEF trailer (blocks, "SEFH" directory, its length, "SEFT") in the tail window."""
    size = int.from_bytes(tail[-8:-4], "little")
    return len(tail) < _ZIP_TAIL and tail.endswith(b"SEFT") and tail[-8 - size :][:4] == b"SEFH"


def _png(content: bytes, regions: list[_Region]) -> None:
    i, n = 8, len(content)
    for _ in range(_MAX_STEPS):
        if i + 8 > n:
            return
        length, kind = int.from_bytes(content[i : i + 4], "big"), content[i + 4 : i + 8]
        _need(kind.isalpha() and length < 1 << 31, MALFORMED)
        if kind == b"IEND":
            return _check_end(content, i + 12 + length)
        if kind not in (b"IDAT", b"fdAT"):
            regions.append((i + 8, min(n, i + 8 + length), kind))
        i += 12 + length
    raise _Refused(TOO_COMPLEX)


def _gif(content: bytes, regions: list[_Region]) -> None:
    n, flags, steps = len(content), content[10:11] or b"\0", [0]
    i = 13 + (3 << (flags[0] & 7) + 1 if flags[0] & 0x80 else 0)
    while i < n:
        block, steps[0] = content[i], steps[0] + 1
        _need(steps[0] < _MAX_STEPS, TOO_COMPLEX)
        if block == 0x3B:
            return _check_end(content, i + 1)
        if block == 0x21:
            start, i = i + 2, _sub_blocks(content, i + 2, steps)
            if (label := content[start - 1 : start]) in (b"\xfe", b"\xff", b"\x01"):
                regions.append((start, min(n, i), label))
        else:
            _need(block == 0x2C, MALFORMED)
            local = content[i + 9] if i + 9 < n else 0
            i = _sub_blocks(content, i + 11 + (3 << (local & 7) + 1 if local & 0x80 else 0), steps)


def _sub_blocks(content: bytes, i: int, steps: list[int]) -> int:
    """The index after a chain of sub-blocks; runs of equal sizes are skipped by strided slices."""
    n = len(content)
    while i < n:
        size = content[i]
        if size == 0:
            return i + 1
        steps[0] += 1
        _need(steps[0] < _MAX_STEPS, TOO_COMPLEX)
        for window in (16, 4096):
            run = content[i : i + (size + 1) * window : size + 1]
            equal = len(run) - len(run.lstrip(bytes((size,))))
            if equal < window:
                break
        i += (size + 1) * equal
    return n


_WEBP_IMAGE = (b"VP8 ", b"VP8L", b"ALPH", b"ANMF", b"ANIM", b"VP8X")


def _webp(content: bytes, regions: list[_Region]) -> None:
    n, size = len(content), int.from_bytes(content[4:8], "little")
    end, i = 8 + size + (size & 1), 12
    for _ in range(_MAX_STEPS):
        if i + 8 > min(n, end):
            return _check_end(content, end if end <= n else None)
        length = int.from_bytes(content[i + 4 : i + 8], "little")
        if (kind := content[i : i + 4]) not in _WEBP_IMAGE:
            regions.append((i + 8, min(n, i + 8 + length), kind))
        i += 8 + length + (length & 1)
    raise _Refused(TOO_COMPLEX)


# PDF: names that act or carry files; a regular character (not whitespace or a delimiter).
_REGULAR = rb"[^\x00\t\n\x0c\r ()<>\[\]{}/%]"
_PDF_NAMES = (b"/JavaScript", b"/EmbeddedFile", b"/Launch", b"/RichMedia")
_PDF_SHORT = tuple(re.compile(rb"/%s(?!%s)" % (n, _REGULAR)) for n in (b"JS", b"EF", b"XFA"))
_ESCAPED_ALNUM = re.compile(rb"#(?:3[0-9]|[46][1-9A-Fa-f]|[57][0-9Aa])")
_REGULAR_RUN, _ESCAPE = re.compile(_REGULAR + rb"{0,127}"), re.compile(rb"#([0-9A-Fa-f]{2})")
_HIDDEN = tuple(b"JavaScript JS EmbeddedFile EF Launch RichMedia XFA ObjStm".split())


def _pdf(content: bytes, regions: list[_Region]) -> tuple[bytes, list[bytes], list[bool]]:
    # Split at "stream": a piece after "endstream" (its predecessor ends in "end") is syntax,
    # a piece after "stream" is a stream's data; the last piece is taken as syntax whatever.
    pieces = content.rsplit(b"stream", 2 * _MAX_STREAMS)  # rfind's worst case is the mildest
    _need(len(pieces) <= 2 * _MAX_STREAMS, TOO_COMPLEX)
    after_end = [True, *(p.endswith(b"end") for p in pieces[:-1])]
    syntax = [p for p, plain in zip(pieces, [*after_end[:-1], True], strict=True) if plain]
    budget = _MAX_PDF_SYNTAX - sum(map(len, syntax))
    _need(budget >= 0, TOO_COMPLEX)
    for i in range(1, len(pieces)):
        if not after_end[i] and after_end[i - 1] and b"/ObjStm" in pieces[i - 1]:
            objects = stream_data(pieces[i - 1], pieces[i], budget)
            budget -= len(objects)
            syntax.append(objects)
    text = b"\n".join(syntax)
    _need(not any(n in text for n in _PDF_NAMES), PDF_ACTIVE)
    _need(not any(p.search(text) for p in _PDF_SHORT), PDF_ACTIVE)
    _need(text.count(b"#") <= 100_000, TOO_COMPLEX)
    for k, m in enumerate(_ESCAPED_ALNUM.finditer(text)):  # a letter or digit escaped
        _need(k < 1000, TOO_COMPLEX)
        slash = text.rfind(b"/", max(0, m.start() - 127), m.start())
        name = _REGULAR_RUN.match(text, slash + 1)  # the name the escape is in, if any
        decoded = _ESCAPE.sub(lambda e: bytes.fromhex(e[1].decode()), name[0])
        _need(slash < 0 or name.end() < m.end() or not decoded.startswith(_HIDDEN), PDF_HIDDEN)
    eof = content.rfind(b"%%EOF", max(0, len(content) - 1029))
    if eof >= 0:
        _need(not content[eof + 5 :].strip(_PADDING), TRAILING_DATA)
    else:
        _need(b"%%EOF" not in text, TRAILING_DATA)  # an end followed by over 1 KiB
    return text, pieces, after_end  # for the metadata's XMP streams


_STRUCTURE: dict[str, Callable[[bytes, list[_Region]], object]] = {"application/pdf": _pdf}
_STRUCTURE |= {"image/jpeg": _jpeg, "image/png": _png, "image/gif": _gif, "image/webp": _webp}


def _text_type(body: bytes) -> str | None:
    """The text type of BOM-less bytes by their content, None when they are not text. Past
    1 MiB only the head is decoded (the rest may hold no NUL and no byte UTF-8 never uses);
    JSON is known by its shape (and parsed only to be judged)."""
    head = body[:MAX_TEXT_BYTES]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if len(body) == len(head) or e.reason != "unexpected end of data":
            return None
    first, last = head.lstrip()[:1], body[-4096:].rstrip()[-1:]
    controls = len(head) - len(head.translate(None, _CONTROLS))
    if not first or b"\x00" in body or controls * 100 > len(head):
        return None
    if len(body) > len(head) and any(bytes((b,)) in body for b in (0xC0, 0xC1, *range(245, 256))):
        return None
    if first + last in (b"{}", b"[]"):
        return JSON
    lower = head.lower()
    if b"<svg" in lower:
        return "image/svg+xml"
    if any(tag in lower for tag in _MARKUP):
        return "text/html"
    if re.match(rb"\s*<(?:\?xml|[A-Za-z])", head):
        return "application/xml"
    lines = [line for line in head[:65536].splitlines()[:6] if line.strip()][:5]
    counts = {line.count(b",") or line.count(b";") or line.count(b"\t") for line in lines}
    csv = len(lines) >= 2 and len(counts) == 1 and 0 not in counts
    return "text/csv" if csv else "text/plain"


_JSON_STRING = re.compile(r'("(?:[^"\\]++|\\.)*+"?)')  # possessive: one pass, never rescans
_JSON_SKELETON = re.compile(r"[\s\[\]{},:+\-.0-9eEtrufalsn]*")


def _json_text(text: str) -> str | None:
    """The JSON document with its strings (keys, values) decoded in place and numbers as they
    are, so no escape hides a character; None when it is not JSON. No tree is built."""
    _need(text.count('"') <= 2 * _MAX_JSON_ITEMS, TOO_COMPLEX)
    parts = _JSON_STRING.split(text)
    skeleton = "".join(parts[0::2])
    balanced = all(skeleton.count(a) == skeleton.count(b) for a, b in ("[]", "{}"))
    if not (balanced and _JSON_SKELETON.fullmatch(skeleton)):
        return None
    try:
        parts[1::2] = json.loads("[" + ",".join(parts[1::2]) + "]")
    except ValueError:
        return None
    return "".join(parts)


def _magic_type(content: bytes) -> str | None:
    found = next((t for m, at, t in _MAGIC if content[at : at + len(m)] == m), None)
    return None if found == "image/webp" and content[:4] != b"RIFF" else found


def sniff_media_type(content: bytes) -> str | None:
    """The type the bytes are, whatever the upload claimed: a known binary type or JSON."""
    body = content[3:] if content.startswith(b"\xef\xbb\xbf") else content
    return _magic_type(content) or (JSON if _text_type(body) == JSON else None)


def judge_upload(
    content: bytes, allowed_types: frozenset[str], text_judge: Callable[[str], bool] | None
) -> str | None:
    """None when the upload may go through, else the reason (a fixed sentence naming the rule).
    `text_judge(text)` is True when text breaks a content rule: a text file's, or the text of
    an image's or a PDF's metadata; without one, neither is judged."""
    try:
        media_type = _magic_type(content)
        regions: list[_Region] = []
        if media_type is None:
            return _judge_text(content, allowed_types, text_judge)
        _need(media_type in allowed_types, NOT_ALLOWED)
        _need(not any(tag in content[:1024].lower() for tag in _MARKUP), MARKUP)
        found = _STRUCTURE[media_type](content, regions)
        _check_carriers(content, regions)
        if text_judge is not None:  # human-written metadata, within policy.upload_metadata's caps
            text = metadata_text(media_type, content, regions, found)
            _need(not (text and text_judge(text)), METADATA_BREAKS_RULES)
    except _Refused as refused:
        return str(refused)
    except TooComplex:
        return TOO_COMPLEX
    except Unreadable:
        return PDF_UNREADABLE if media_type == "application/pdf" else MALFORMED
    return None


def _judge_text(
    content: bytes, allowed: frozenset[str], text_judge: Callable[[str], bool] | None
) -> str | None:
    body = content[3:] if content.startswith(b"\xef\xbb\xbf") else content
    large = text_judge is not None and len(body) > MAX_TEXT_BYTES
    media_type = _text_type(body)
    text = None
    if media_type == JSON and JSON in allowed and text_judge is not None and not large:
        text = _json_text(body.decode())
        media_type = JSON if text is not None else "text/plain"  # shaped like JSON, but not
    _need(media_type is not None, NOT_ALLOWED)
    _need(media_type not in NEVER_ALLOWED, MARKUP)
    plain_csv = media_type == "text/csv" and "text/plain" in allowed
    _need(media_type in allowed or plain_csv, NOT_ALLOWED)
    _need(not large, TEXT_TOO_LARGE)  # no carrier check: every archive's header has a NUL
    if text_judge is None:
        return None
    return TEXT_BREAKS_RULES if text_judge(body.decode() if text is None else text) else None
