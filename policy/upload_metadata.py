"""The human-written text an image's or a PDF's metadata carries, for policy.uploads to give
its text judge: `metadata_text(media_type, content, regions, found)` reads it from what the
walkers of policy.uploads found (an image's segments, chunks and extensions; a PDF's syntax,
object streams inflated, and pieces) and returns the fields, each once, joined by a line
with a word in it ("xx": no number runs from one field into the next), "" when none.

    JPEG   COM; EXIF (APP1 "Exif"): ImageDescription, Artist, Copyright, UserComment (its
           charset prefix read: ASCII, UNICODE in the TIFF's byte order, JIS), CameraOwnerName,
           XPTitle, XPComment, XPAuthor, XPKeywords, XPSubject (UTF-16LE), in IFD0, the IFDs
           chained after it and the Exif IFD; XMP (APP1, standard, and extended with its parts
           joined by offset); IPTC (APP13 "Photoshop 3.0", 8BIM 0x0404): object name,
           keywords, instructions, by-line and its title, headline, credit, source, copyright,
           contact, caption, writer.
    PNG    tEXt, zTXt, iTXt: every keyword (and translated keyword), the text of Title,
           Author, Description, Copyright, Disclaimer, Warning, Comment; XML:com.adobe.xmp
           as XMP; ImageMagick's "Raw profile type exif/APP1/xmp" (hex); eXIf.
    GIF    comment and plain-text extensions; XMP ("XMP DataXMP" application extension).
    WebP   EXIF and XMP chunks.
    XMP    elements and attributes, under any namespace prefix, named description, title,
           creator, rights, subject, Headline, Credit, Instructions, CaptionWriter,
           UsageTerms, WebStatement, CreatorContactInfo and Ci*, UserComment,
           ImageDescription, Artist, Copyright, Keywords, hierarchicalSubject, TagsList,
           LastKeywordXMP, Label, Comment, Caption: one field each, tags stripped, CDATA
           kept, entities decoded; UTF-8, or UTF-16 by its NUL bytes.
    PDF    /Title, /Author, /Subject, /Keywords strings anywhere in the syntax or object
           streams (bookmark titles too): literal (escapes decoded; nested 8 deep at most,
           else too complex) or hex, UTF-16 or UTF-8 by BOM, else Latin-1; XMP streams (a
           dictionary with /Subtype /XML), plain or Flate (else unreadable).

Human-written fields only: machine fields (Make, Model, Software, serial numbers, dates,
image and document IDs, lens names, PDF /Creator and /Producer, unknown XMP properties and
PNG keywords' text) hold serials and dates the detector reads as phone numbers and tool URLs
("www.inkscape.org", "PDFsharp (www.pdfsharp.com)") it reads as links. Encoder banners met
in human fields (JPEGmini's and ezgif's comments, ffmpeg's "Lavc", OnePlus's "oplus_<flags>"
UserComment) are passed over when they are the whole value.

Caps, past which the file is too complex to check: 256 KiB of field text (judging only the
first part would let padding push details out of sight), 1 MiB read including repeats (EXIF
values may all point at one string), 10,000 items (IFD entries, 8BIM blocks, IPTC datasets,
GIF sub-block runs, XMP fields and their entities, PDF strings and their escapes), 1 MiB
inflated from PNG text, 4 MiB of PDF XMP; 8 IFDs per EXIF block. The regions are bounded by
policy.uploads (about 1 MiB of image metadata, 1 MiB of PDF syntax); regexes are possessive.
Not judged: machine fields, MakerNotes, ICC profile text, other APPn segments, an EXIF
thumbnail's own segments, the strings of a PDF naming /Encrypt (ciphertext, which the rules
would misread about once in 300 strings), PDF strings behind references or escaped names, XMP
streams without /Subtype /XML: a crafted PDF may as well write its page text, not judged.
"""

from __future__ import annotations

import html
import itertools
import re
import struct
import zlib
from typing import cast

MAX_TEXT = 1 << 18
MAX_INFLATED = 1 << 20
_MAX_ITEMS, _MAX_IFDS = 10_000, 8
_BETWEEN = "\nxx\n"  # a word: phone numbers do not run across it
_BANNERS = re.compile(
    r"Optimized by JPEGmini [\w.-]+(?: Internal)? 0x[0-9a-f]{8}|Created with ezgif\.com GIF"
    r" maker|GIF (?:compressed|optimized) with https://ezgif\.com/optimize|Lavc\d+\.\d+\.\d+"
    r"|oplus_\d{1,20}"
)


class TooComplex(Exception): ...


class Unreadable(Exception): ...


class _Fields:
    """The fields found, each once, within the caps."""

    def __init__(self) -> None:
        self.found: dict[str, None] = {}
        self.size, self.read, self.items, self.room = 0, 0, 0, MAX_INFLATED

    def add(self, text: str) -> None:
        self.read += len(text)  # repeats too: EXIF values may all point at one long string
        if self.read > 4 * MAX_TEXT:
            raise TooComplex
        text = text.replace("\0", "\n").strip()  # NUL ends or separates (EXIF Copyright)
        if text and text not in self.found and not _BANNERS.fullmatch(text):
            self.size += len(text) + len(_BETWEEN)
            if self.size > MAX_TEXT:
                raise TooComplex
            self.found[text] = None

    def step(self, count: int = 1) -> None:
        self.items += count
        if self.items > _MAX_ITEMS:
            raise TooComplex

    def inflate(self, data: bytes) -> bytes:
        try:
            out = zlib.decompressobj().decompress(data, self.room + 1)
        except zlib.error:
            raise Unreadable from None
        self.room -= len(out)
        if self.room < 0:
            raise TooComplex
        return out

    def text(self) -> str:
        return _BETWEEN.join(self.found)


def _decode(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")


# EXIF: human tags of IFD0 and the Exif IFD; XP* are UTF-16LE bytes, UserComment is prefixed.
_XP_TAGS, _EXIF_IFD = frozenset(range(0x9C9B, 0x9CA0)), 0x8769
# ImageDescription, Artist, Copyright, UserComment, CameraOwnerName; XPTitle to XPSubject.
_HUMAN_TAGS = frozenset({0x010E, 0x013B, 0x8298, 0x9286, 0xA430}) | _XP_TAGS


def _exif(tiff: bytes, fields: _Fields) -> None:
    tiff = tiff.removeprefix(b"Exif\0\0")  # in JPEG, and in some PNGs and WebPs
    order = {b"II*\0": "<", b"MM\0*": ">"}.get(tiff[:4])
    if order is None or len(tiff) < 8:
        return
    queue, seen = [*struct.unpack_from(order + "I", tiff, 4)], set()
    while queue and len(seen) < _MAX_IFDS:
        if (at := queue.pop()) in seen or not 8 <= at <= len(tiff) - 2:  # 0: no IFD
            continue
        seen.add(at)
        (count,) = struct.unpack_from(order + "H", tiff, at)
        table = tiff[at + 2 : at + 2 + 12 * count]
        table = table[: len(table) - len(table) % 12]
        fields.step(len(table) // 12)
        for k, (tag, kind, n, value) in enumerate(struct.iter_unpack(order + "HHII", table)):
            if tag == _EXIF_IFD:
                queue.append(value)
            elif tag in _HUMAN_TAGS and kind in (1, 2, 7, 129):  # BYTE, ASCII, UNDEFINED, UTF-8
                data = table[12 * k + 8 : 12 * k + 8 + n] if n <= 4 else tiff[value : value + n]
                if tag in _XP_TAGS and kind == 1:  # as Windows writes them; ASCII as ASCII
                    fields.add(data.decode("utf-16-le", "replace"))
                else:
                    fields.add(_user_comment(data, order) if tag == 0x9286 else _decode(data))
        if len(tail := tiff[at + 2 + len(table) :][:4]) == 4:  # the next IFD in the chain
            queue += struct.unpack(order + "I", tail)


def _user_comment(data: bytes, order: str) -> str:
    code, text = data[:8], data[8:]
    if code == b"UNICODE\0":
        return text.decode("utf-16-le" if order == "<" else "utf-16-be", "replace")
    if code == b"JIS\0\0\0\0\0":
        return text.decode("shift_jis", "replace")
    return _decode(text if code in (b"ASCII\0\0\0", bytes(8)) else data)


# XMP: human properties in any namespace prefix, as elements or attributes.
_XMP_NAMES = (
    rb"description|title|creator|rights|subject|Headline|Instructions|UsageTerms|WebStatement"
    rb"|UserComment|ImageDescription|Artist|Keywords|hierarchicalSubject|TagsList"
    rb"|LastKeywordXMP|Label|C(?:i\w++|redit|aption(?:Writer)?|reatorContactInfo|opyright|omment)"
)
_XMP_ELEMENT = re.compile(
    rb"<[\w.-]*+:(" + _XMP_NAMES + rb")(?![\w.-])[^<>]*+(?<!/)>((?:[^<]++|<(?!/[\w.-]*+:\1>))*+)"
)
_XMP_ATTRIBUTE = re.compile(rb":(?:" + _XMP_NAMES + rb")\s*+=\s*+(?:\"([^\"<]*+)\"|'([^'<]*+)')")
_CDATA, _TAG = re.compile(rb"<!\[CDATA\[|\]\]>"), re.compile(rb"<[^<>]*+>")


def _xmp(packet: bytes, fields: _Fields) -> None:
    if packet[:64].count(0) > 16:  # UTF-16, which the XMP specification allows
        big = packet[:1] == b"\0" or packet[:2] == b"\xfe\xff"
        packet = packet.decode("utf-16-be" if big else "utf-16-le", "replace").encode()
    for _, inner in _XMP_ELEMENT.findall(packet):
        fields.step(1 + inner.count(b"&"))  # an entity is an item: each is a call
        fields.add(html.unescape(_decode(_TAG.sub(b" ", _CDATA.sub(b" ", inner)))))
    for double, single in _XMP_ATTRIBUTE.findall(packet):
        fields.step(1 + (double or single).count(b"&"))
        fields.add(html.unescape(_decode(double or single)))


def _unblock(data: bytes, fields: _Fields) -> bytes:
    """A GIF extension's sub-blocks joined; runs of equal sizes are cut by strided deletes."""
    out, i = bytearray(), 0
    while i < len(data) and (size := data[i]):
        fields.step()
        run = data[i : i + (size + 1) * 4096 : size + 1]
        chunk = bytearray(data[i : i + (size + 1) * (len(run) - len(run.lstrip(run[:1])))])
        i += len(chunk)
        del chunk[:: size + 1]
        out += chunk
    return bytes(out)


def _photoshop(data: bytes, fields: _Fields) -> None:
    """IPTC-IIM in Photoshop's image resources (8BIM blocks, resource 0x0404)."""
    i = 14  # after "Photoshop 3.0\0"
    while data[i : i + 4] == b"8BIM" and i + 12 <= len(data):
        fields.step()
        name = data[i + 6] + 1
        at = i + 6 + name + (name & 1)
        size = int.from_bytes(data[at : at + 4], "big")
        if data[i + 4 : i + 6] == b"\x04\x04":
            _iptc(data[at + 4 : at + 4 + size], fields)
        i = at + 4 + size + (size & 1)


# Object name, keywords, instructions, by-line (and title), headline, credit, source,
# copyright, contact, caption, writer.
_IPTC_HUMAN = frozenset({5, 25, 40, 80, 85, 105, 110, 115, 116, 118, 120, 122})


def _iptc(data: bytes, fields: _Fields) -> None:
    i = 0
    while data[i : i + 1] == b"\x1c" and i + 5 <= len(data):
        fields.step()
        record, dataset, size = data[i + 1], data[i + 2], int.from_bytes(data[i + 3 : i + 5])
        if size & 0x8000:
            return  # an extended length: binary data, never text
        if record == 2 and dataset in _IPTC_HUMAN:
            fields.add(_decode(data[i + 5 : i + 5 + size]))
        i += 5 + size


_XMP_NS, _XMP_EXTENSION = (
    b"http://ns.adobe.com/xap/1.0/\0",
    b"http://ns.adobe.com/xmp/extension/\0",
)
_PNG_HUMAN = frozenset("title author description copyright disclaimer warning comment".split())


def image_metadata(media_type: str, content: bytes, regions: list[tuple[int, int, bytes]]) -> str:
    """The human-written fields of an image's metadata, `regions` being (start, end, kind)
    of its segments, chunks or extensions as policy.uploads walked them."""
    fields, extended = _Fields(), []
    for start, end, kind in regions:
        data = content[start:end]
        if media_type == "image/jpeg":
            if kind == b"\xfe":  # COM
                fields.add(_decode(data))
            elif data.startswith(b"Exif\0\0"):
                _exif(data, fields)
            elif data.startswith(_XMP_NS):
                _xmp(data[len(_XMP_NS) :], fields)
            elif data.startswith(_XMP_EXTENSION):  # GUID, full length, offset, part
                at = len(_XMP_EXTENSION)
                offset = int.from_bytes(data[at + 36 : at + 40])
                extended.append((data[at : at + 32], offset, data[at + 40 :]))
            elif data.startswith(b"Photoshop 3.0\0"):
                _photoshop(data, fields)
        elif media_type == "image/png":
            _png(kind, data, fields)
        elif media_type == "image/gif":
            if kind == b"\xff" and data[:12] == b"\x0bXMP DataXMP":
                _xmp(data[12:], fields)
            elif kind != b"\xff":  # a comment, or plain text after its 12-byte header
                text = _unblock(data, fields)
                fields.add(_decode(text[data[0] :] if kind == b"\x01" and data else text))
        elif kind in (b"EXIF", b"XMP "):  # WebP
            (_exif if kind == b"EXIF" else _xmp)(data, fields)
    for _, parts in itertools.groupby(sorted(extended, key=lambda p: p[:2]), lambda p: p[0]):
        _xmp(b"".join(part for _, _, part in parts), fields)
    return fields.text()


def _png(kind: bytes, data: bytes, fields: _Fields) -> None:
    if kind == b"eXIf":
        return _exif(data, fields)
    if kind not in (b"tEXt", b"zTXt", b"iTXt"):
        return None
    fields.step()
    keyword, _, text = data.partition(b"\0")
    fields.add(keyword.decode("latin-1"))
    if kind == b"zTXt":
        text = fields.inflate(text[1:])
    elif kind == b"iTXt":  # compressed flag, method, language tag, translated keyword, text
        compressed, (_, _, rest) = text[:1] == b"\1", text[2:].partition(b"\0")
        translated, _, text = rest.partition(b"\0")
        fields.add(_decode(translated))
        text = fields.inflate(text) if compressed else text
    if keyword == b"XML:com.adobe.xmp":
        _xmp(text, fields)
    elif keyword in (b"Raw profile type exif", b"Raw profile type APP1", b"Raw profile type xmp"):
        try:  # ImageMagick: a newline, the type, the length, then hex lines
            raw = bytes.fromhex(text.split(None, 2)[2].decode("latin-1"))
        except (IndexError, ValueError):
            raise Unreadable from None
        (_xmp if keyword.endswith(b"xmp") or raw.startswith(_XMP_NS) else _exif)(raw, fields)
    elif keyword.decode("latin-1").casefold() in _PNG_HUMAN:
        fields.add(_decode(text))
    return None


# PDF: literal strings (balanced parentheses, 8 deep at most), hex strings.
_NESTED = rb"(?:[^()\\]++|\\[\s\S])*+"
for _ in range(8):
    _NESTED = rb"(?:[^()\\]++|\\[\s\S]|\(" + _NESTED + rb"\))*+"
_PDF_STRING = re.compile(
    rb"/(?:Title|Author|Subject|Keywords)(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])\s*+"
    rb"(?:\((" + _NESTED + rb")\)|<([0-9A-Fa-f\s]*+)>|(\())"
)
_LITERAL_ESCAPE = re.compile(rb"\\([0-7]{1,3}|\r\n|[\s\S])")
_ESCAPES = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
_ESCAPES |= dict.fromkeys((b"\r\n", b"\r", b"\n"), b"")  # a line continued


def _unescape(escape: re.Match[bytes]) -> bytes:
    code = escape[1]
    return bytes((int(code, 8) & 255,)) if code[:1].isdigit() else _ESCAPES.get(code, code)


def pdf_metadata(syntax: bytes, packets: list[bytes]) -> str:
    """The human-written strings of a PDF's syntax (its object streams inflated) and the
    human fields of its XMP packets; an encrypted PDF's strings are ciphertext, passed over."""
    fields = _Fields()
    for found in _PDF_STRING.finditer(syntax) if b"/Encrypt" not in syntax else ():
        literal, hexa, unclosed = found.groups()
        if unclosed is not None:
            raise TooComplex  # nested too deep, or never closed
        fields.step(1 + (literal or b"").count(b"\\"))  # an escape is an item: each is a call
        if literal is not None:
            raw = _LITERAL_ESCAPE.sub(_unescape, literal)
        else:
            digits = re.sub(rb"\s", b"", hexa)
            raw = bytes.fromhex((digits + b"0" * (len(digits) & 1)).decode())
        if raw[:2] in (b"\xfe\xff", b"\xff\xfe"):
            fields.add(raw.decode("utf-16", "replace"))
        else:
            fields.add(_decode(raw.removeprefix(b"\xef\xbb\xbf")))
    for packet in packets:
        _xmp(packet, fields)
    return fields.text()


_FLATE_ONLY = re.compile(rb"/Filter\s*(?:/FlateDecode|\[\s*/FlateDecode\s*\])")
_MAX_PDF_XMP = 4 << 20
_XML = re.compile(rb"/Subtype\s*+/XML(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])")


def stream_data(head: bytes, body: bytes, budget: int) -> bytes:
    """A PDF stream's data (an object stream's or XMP), inflated within the budget (too complex
    past it); Unreadable if filtered but by Flate. `head` is all the syntax since the last
    stream, so a padded dictionary cannot push its keys out."""
    data = body.removeprefix(b"\r").removeprefix(b"\n").removesuffix(b"end")
    if b"/Filter" in head:
        if not _FLATE_ONLY.search(head) or b"/DecodeParms" in head:
            raise Unreadable
        try:
            data = zlib.decompressobj().decompress(data, max(budget, 0) + 1)
        except zlib.error:
            raise Unreadable from None
    if len(data) > budget:
        raise TooComplex
    return data


def metadata_text(
    media_type: str, content: bytes, regions: list[tuple[int, int, bytes]], found: object
) -> str:
    """The human-written fields of the file's metadata. `regions` are an image's (start, end,
    marker, chunk type or label), `found` a PDF's (syntax, pieces split at "stream", whether
    each follows "endstream"): XMP streams are data after a dictionary naming /Subtype /XML."""
    if media_type != "application/pdf":
        return image_metadata(media_type, content, regions)
    syntax, pieces, after_end = cast("tuple[bytes, list[bytes], list[bool]]", found)
    packets, budget = [], _MAX_PDF_XMP
    for i in range(1, len(pieces)):
        if after_end[i - 1] and not after_end[i] and _XML.search(pieces[i - 1]):
            packets.append(packet := stream_data(pieces[i - 1], pieces[i], budget))
            budget -= len(packet)
    return pdf_metadata(syntax, packets)
