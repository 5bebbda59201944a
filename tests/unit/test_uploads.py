"""policy.uploads: honest photos, documents and text pass (phone-style JPEGs, Pillow's images,
PDFs as word processors and pdfTeX write them); archives, programs, polyglots, active PDFs,
markup and text with contact details are refused for their rule; adversarial shapes are bounded."""

from __future__ import annotations

import io
import json
import random
import re
import struct
import time
import zipfile
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, PngImagePlugin

from policy import uploads
from policy.uploads import judge_upload

IMAGES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
EVERYTHING = IMAGES | {"application/pdf", "application/json", "text/plain", "text/csv"}
MEBI = 1 << 20


def noisy_image(width: int, height: int, seed: int = 1) -> Image.Image:
    """A photo-like image: a gradient with noise, so its compressed data looks random."""
    rng = random.Random(seed)
    noise = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    gradient = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    return Image.blend(noise, gradient, 0.6)


def encode(image: Image.Image, kind: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, kind, **options)
    return out.getvalue()


def exif_with_thumbnail(thumbnail: bytes) -> bytes:
    """EXIF as a phone writes it: IFD0 (make, model), then IFD1 pointing at a JPEG thumbnail."""
    ifd0 = struct.pack("<HHHII HHII I", 2, 0x010F, 2, 6, 38, 0x0110, 2, 10, 44, 54)
    ifd1 = struct.pack("<HHHII HHII I", 2, 0x0201, 4, 1, 84, 0x0202, 4, 1, len(thumbnail), 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd0 + b"Phone\x00Model 12\x00\x00"
    assert len(tiff) == 54 and len(tiff + ifd1) == 84  # where IFD0 says IFD1 and the strings are
    return b"Exif\x00\x00" + tiff + ifd1 + thumbnail


XMP = (
    b"http://ns.adobe.com/xap/1.0/\x00<?xpacket begin='\xef\xbb\xbf'?><x:xmpmeta xmlns:x="
    b'"adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b"<rdf:Description/></rdf:RDF></x:xmpmeta><?xpacket end='w'?>"
)


def with_segment(jpeg: bytes, marker: int, payload: bytes) -> bytes:
    """The JPEG with one more segment right after SOI."""
    return jpeg[:2] + struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload + jpeg[2:]


def phone_jpeg(size: tuple[int, int] = (640, 480), progressive: bool = False) -> bytes:
    thumbnail = encode(noisy_image(160, 120, seed=2), "JPEG", quality=80)
    icc = b"ICC_PROFILE\x00\x01\x01" + random.Random(3).randbytes(3000)
    exif = exif_with_thumbnail(thumbnail)
    photo = encode(noisy_image(*size), "JPEG", quality=92, exif=exif, progressive=progressive)
    return with_segment(with_segment(photo, 0xE2, icc), 0xE1, XMP)


def samsung_trailer(data: bytes) -> bytes:
    """Samsung's SEF trailer: a data block, its SEFH directory, the directory's length, SEFT."""
    block = b"\0\0\x01\x0a" + struct.pack("<I", 14) + b"Image_UTC_Data" + data
    sefh = b"SEFH" + struct.pack("<5I", 101, 1, 0x0A010000, 12 + len(block), len(block))
    return block + sefh + struct.pack("<I", len(sefh)) + b"SEFT"


def ultra_hdr_jpeg() -> bytes:
    """A primary image with a gain map appended after its EOI (Android's Ultra HDR, MPF)."""
    return phone_jpeg() + encode(noisy_image(160, 120, seed=4), "JPEG", quality=70)


def png() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "Screenshot tool")
    info.add_itxt("Description", "A bike, barely used")
    return encode(noisy_image(300, 200), "PNG", pnginfo=info)


def gif() -> bytes:
    frames = [noisy_image(120, 90, seed=s).convert("P") for s in range(3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], comment=b"made")


def pdf(objects: list[bytes], info: int | None = None, tail: bytes = b"") -> bytes:
    """A PDF with an xref table, as word processors write them."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref, size = len(out), len(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    extra = b" /Info %d 0 R" % info if info else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (size, extra, xref)
    return bytes(out) + tail


def stream(dictionary: bytes, data: bytes) -> bytes:
    return b"<< %s /Length %d >>\nstream\n%s\nendstream" % (dictionary, len(data), data)


def word_pdf(catalog: bytes = b"", page: bytes = b"", tail: bytes = b"") -> bytes:
    text = b"BT /F1 12 Tf 72 712 Td (A bike, 120 EUR) Tj ET\nq 200 0 0 150 72 500 cm /Im1 Do Q"
    font = zlib.compress(random.Random(5).randbytes(20000))
    photo = encode(noisy_image(200, 150), "JPEG", quality=85)
    image = b"/Type /XObject /Subtype /Image /Width 200 /Height 150 /ColorSpace /DeviceRGB"
    return pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R /Lang (en-GB) /MarkInfo << /Marked true >> "
            b"/Metadata 9 0 R%s >>" % catalog,
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources "
            b"<< /Font << /F1 5 0 R >> /XObject << /Im1 6 0 R >> >> /Annots [7 0 R]%s >>" % page,
            stream(b"/Filter /FlateDecode", zlib.compress(text)),
            b"<< /Type /Font /Subtype /TrueType /BaseFont /ABCDEF+Calibri#20Light "
            b"/FontDescriptor 10 0 R >>",
            stream(image + b" /BitsPerComponent 8 /Filter /DCTDecode", photo),
            b"<< /Type /Annot /Subtype /Link /Rect [72 700 200 720] /Border [0 0 0] "
            b"/A << /S /URI /URI (https://market.example/item/12#4711) >> >>",
            b"<< /Producer (Microsoft\xae Word for Microsoft 365) /Title (Invoice #4711) >>",
            stream(b"/Type /Metadata /Subtype /XML", XMP[29:]),
            b"<< /Type /FontDescriptor /FontName /ABCDEF+Calibri#20Light /FontFile2 11 0 R >>",
            stream(b"/Filter /FlateDecode /Length1 20000", font),
        ],
        info=8,
        tail=tail,
    )


def objstm_pdf(hidden: bytes = b"<< /Producer (pdfTeX-1.40.26) >>") -> bytes:
    """Objects compressed in an object stream, as pdfTeX and LibreOffice write them."""
    inner = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>", hidden]
    offsets, body = [], b""
    for number, item in zip((1, 2, 6), inner, strict=True):
        offsets.append(b"%d %d" % (number, len(body)))
        body += item + b"\n"
    header = b" ".join(offsets) + b"\n"
    objstm = b"/Type /ObjStm /N 3 /First %d /Filter /FlateDecode" % len(header)
    content = stream(b"/Filter /FlateDecode", zlib.compress(b"BT /F1 12 Tf (Hello) Tj ET"))
    return pdf([b"null", b"null", content, stream(objstm, zlib.compress(header + body))])


def zip_file() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("contact.txt", b"call me on +44 7700 900123")
    return out.getvalue()


RAR = b"Rar!\x1a\x07\x01\x00" + bytes.fromhex("3392b5e50a01050600050101808000")
SEVEN_ZIP = b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00\x01\x00\x00\x00" + bytes(40)
PE = b"MZ\x90\x00" + bytes(56) + struct.pack("<I", 64) + b"PE\x00\x00\x64\x86\x03\x00" + bytes(12)
PE += b"\xf0\x00\x22\x00\x0b\x02" + bytes(64)
TAR = b"contact.txt".ljust(100, b"\x00") + b"0000644\x00" * 3 + b"00000000033\x00" * 2
TAR += b"        0" + bytes(100) + b"ustar\x0000" + bytes(247) + b"hello\n".ljust(512, b"\x00")


def padded(content: bytes, size: int) -> bytes:
    return content + random.Random(size).randbytes(size - len(content))


def big_pdf(last: bytes) -> bytes:
    """A PDF past the first MiB (a large image stream), with one more object near its end."""
    image = stream(b"/Subtype /Image /Filter /DCTDecode", padded(b"", MEBI + 300_000))
    return pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages >>", image, last])


def tar_in_stream() -> bytes:
    """A tar header on a 512-byte block past the first MiB, inside a stream's data."""
    data = padded(b"%PDF-1.7\n1 0 obj\n<< /Length 99 >>\nstream\n", 1_200_128)
    data = padded(data + TAR, len(data) + 300_000)  # far from the end: no window sees it
    return data + b"\nendstream\nendobj\ntrailer\n<< /Root 1 0 R >>\n%%EOF\n"


def big_png(payload: bytes) -> bytes:
    """A stored PNG of 2 MiB with a private chunk between its IDATs, far from head and tail."""
    image, at = encode(noisy_image(850, 850), "PNG", compress_level=0), 8
    while at < 700_000:
        at += 12 + int.from_bytes(image[at : at + 4], "big")
    crc = zlib.crc32(b"prVt" + payload).to_bytes(4, "big")
    return image[:at] + len(payload).to_bytes(4, "big") + b"prVt" + payload + crc + image[at:]


def contact_judge(text: str) -> bool:
    """Stands in for policy.contact: phone numbers and e-mail addresses break the rules."""
    return bool(re.search(r"\+?\d(?:[\s\-/.]?\d){6,}|\w@\w+\.\w", text))


HONEST: dict[str, Callable[[], bytes]] = {
    "phone JPEG (EXIF thumbnail, XMP, ICC)": phone_jpeg,
    "progressive JPEG": lambda: phone_jpeg(progressive=True),
    "JPEG with a gain map after its EOI": ultra_hdr_jpeg,
    "Samsung JPEG with its SEF trailer": lambda: phone_jpeg() + samsung_trailer(b"1700000000"),
    "PNG with text chunks": png,
    "animated GIF with a comment": gif,
    "WebP": lambda: encode(noisy_image(300, 200), "WEBP", quality=80),
    "PDF as a word processor writes it": word_pdf,
    "PDF with object streams": objstm_pdf,
    "PDF from Pillow": lambda: encode(noisy_image(300, 200), "PDF"),
    "PDF past the first MiB": lambda: big_pdf(b"<< /Producer (LibreOffice) >>"),
    "JSON without contact details": lambda: b'{"item": "bike", "price": 120, "ok": [true]}',
    "plain text": lambda: "Is the bike still for sale? Übergabe am Sonntag.".encode(),
    "CSV": lambda: b"item,price\nbike,120\nhelmet,20\n",
}


@pytest.mark.parametrize("make", HONEST.values(), ids=HONEST.keys())
def test_honest_files_pass(make: Callable[[], bytes]) -> None:
    assert judge_upload(make(), EVERYTHING, contact_judge) is None


def test_the_honest_files_have_the_shapes_that_could_mislead() -> None:
    photo = phone_jpeg()  # the thumbnail's SOI, SOS and EOI come before the photo's own scan
    assert photo.index(b"Exif\x00\x00") < photo.index(b"\xff\xd9") < photo.rindex(b"\xff\xda")
    assert photo.count(b"\xff\xd8\xff") == 2 and ultra_hdr_jpeg().count(b"\xff\xd8\xff") == 3
    assert b"/ObjStm" in objstm_pdf() and b"#20" in word_pdf() and b"#4711" in word_pdf()


def test_short_magics_in_scan_data_are_chance_not_carriers() -> None:
    """PK\\3\\4, MZ and gzip's magic inside a photo's compressed data refuse nothing."""
    photo = phone_jpeg(size=(1024, 768))
    middle = len(photo) // 2
    planted = photo[:middle] + b"PK\x03\x04MZ\x90\x1f\x8b\x08\x00" + photo[middle + 13 :]
    assert judge_upload(planted, IMAGES, None) is None


def refusals(reason: str, cases: dict[str, Callable[[], bytes]]) -> list[object]:
    return [pytest.param(make, reason, id=name) for name, make in cases.items()]


CARRIERS = {
    "ZIP after a PDF header": lambda: b"%PDF-1.7\n" + zip_file(),
    "RAR after a PDF header": lambda: padded(b"%PDF-1.4\n%\xe2\xe3\n" + RAR, 200_000),
    "7z inside a PDF stream": lambda: pdf([stream(b"", SEVEN_ZIP)]),
    "ZIP appended to a JPEG": lambda: phone_jpeg() + zip_file(),
    "ZIP appended to a PNG": lambda: png() + zip_file(),
    "ZIP appended to a GIF": lambda: gif() + zip_file(),
    "ZIP appended to a WebP": lambda: HONEST["WebP"]() + zip_file(),
    "ZIP and a fake EOI after a JPEG": lambda: phone_jpeg() + zip_file() + b"\xff\xd9",
    "RAR after a JPEG's padding": lambda: phone_jpeg() + b"\x00" * 9 + RAR,
    "ZIP before a large PDF's %%EOF": lambda: big_pdf(stream(b"", zip_file())),
    "tar header on a block past the first MiB": tar_in_stream,
    "ELF inside a PDF stream": lambda: pdf([stream(b"", padded(ELF, 200_000))]),
    "PE in a JPEG's APP segment": lambda: with_segment(phone_jpeg(), 0xE9, PE),
    "PE appended to a GIF": lambda: gif() + PE,
    "ELF in a PNG chunk past the first MiB": lambda: big_png(ELF),
}
TRAILING = {
    "data after a PNG's IEND": lambda: png() + b"call me 0151 2345678",
    "a Samsung trailer holding a video": lambda: phone_jpeg() + samsung_trailer(bytes(70_000)),
    "a motion photo's video after EOI": lambda: phone_jpeg() + b"\0\0\0\x18ftypmp42" + bytes(64),
    "data after a PDF's %%EOF": lambda: word_pdf(tail=b"garbage " * 10),
}
PDF_ACTIVE = {
    "an embedded file": lambda: word_pdf(b" /Names << /EmbeddedFiles << /Names [] >> >>"),
    "JavaScript when opened": lambda: word_pdf(b" /OpenAction << /S /JavaScript /JS (1) >>"),
    "a launch action": lambda: word_pdf(page=b" /AA << /O << /S /Launch /F (cmd.exe) >> >>"),
    "an XFA form": lambda: word_pdf(b" /AcroForm << /XFA 12 0 R >>"),
    "/JS alone": lambda: word_pdf(page=b" /AA << /O << /JS (app.alert(1)) >> >>"),
    "JavaScript in an object stream": lambda: objstm_pdf(b"<< /S /JavaScript /JS (1) >>"),
    "JavaScript in an object stream behind a long dictionary": lambda: objstm_pdf(
        b"<< /S /JavaScript >>"
    ).replace(b"/Type /ObjStm", b"/Type /ObjStm /Pad (%s)" % (b"x" * 5000)),
}
PDF_HIDDEN = {
    "/J#61vaScript": lambda: word_pdf(b" /OpenAction << /S /J#61vaScript /J#53 (1) >>"),
    "/Emb#65ddedFiles": lambda: word_pdf(b" /Names << /Emb#65ddedFiles 12 0 R >>"),
    "an escaped /Obj#53tm": lambda: objstm_pdf().replace(b"/ObjStm", b"/Obj#53tm"),
    "an escaped name in an object stream": lambda: objstm_pdf(b"<< /S /#4A#61#76#61#53cript >>"),
}
MARKUP = {
    "HTML disguised as an image": lambda: b"<!DOCTYPE html><html><script>alert(1)</script>",
    "SVG disguised as an image": lambda: b'<?xml version="1.0"?>\n<svg xmlns="w3.org/2000/svg">',
    "a GIF header before HTML": lambda: b"GIF89a<html><body onload=alert(1)></body></html>",
    "HTML in a JPEG's comment": lambda: with_segment(phone_jpeg(), 0xFE, b"<script>1</script>"),
}
TEXT_BREAKS_RULES = {
    "JSON hiding a phone number in escapes": lambda: (
        b'{"note": "call \\u0030\\u0031\\u0035\\u0031 \\u0032\\u0033\\u0034\\u0035\\u0036\\u0037"}'
    ),
    "JSON with a phone number as a number": lambda: b'{"phone": 4915112345678}',
    "text with an e-mail address": lambda: b"write to seller@example.org instead",
    "CSV with a phone number": lambda: b"name,phone\nbob,+49 151 2345678\n",
}
BOMB = stream(b"/Type /ObjStm /Filter /FlateDecode", zlib.compress(bytes(3 * MEBI)))
OTHERS = {
    "a program": (lambda: PE, uploads.NOT_ALLOWED),
    "an archive": (zip_file, uploads.NOT_ALLOWED),
    "text over 1 MiB": (lambda: b"a few words. " * 90_000, uploads.TEXT_TOO_LARGE),
    "a JPEG with bytes where a marker belongs": (
        lambda: b"\xff\xd8\xff\xfe\x00\x03x\x00junk" + phone_jpeg()[2:],  # no marker after COM
        uploads.MALFORMED,
    ),
    "an object stream it cannot read": (
        lambda: objstm_pdf().replace(b"/FlateDecode", b"/LZWDecode"),
        uploads.PDF_UNREADABLE,
    ),
    "an object stream bomb": (lambda: pdf([BOMB]), uploads.TOO_COMPLEX),
    "a bomb after an uncompressed object stream past the syntax cap": (
        lambda: pdf([stream(b"/Type /ObjStm", b"1 0 " + b"x" * (2 * MEBI)), BOMB]),
        uploads.TOO_COMPLEX,
    ),
}


@pytest.mark.parametrize(
    ("make", "reason"),
    refusals(uploads.CARRIES_FILES, CARRIERS)
    + refusals(uploads.TRAILING_DATA, TRAILING)
    + refusals(uploads.PDF_ACTIVE, PDF_ACTIVE)
    + refusals(uploads.PDF_HIDDEN, PDF_HIDDEN)
    + refusals(uploads.MARKUP, MARKUP)
    + refusals(uploads.TEXT_BREAKS_RULES, TEXT_BREAKS_RULES)
    + [pytest.param(make, reason, id=name) for name, (make, reason) in OTHERS.items()],
)
def test_refused(make: Callable[[], bytes], reason: str) -> None:
    # HTML and SVG are refused even where their types are listed.
    allowed = EVERYTHING | uploads.NEVER_ALLOWED
    assert judge_upload(make(), allowed, contact_judge) == reason


@pytest.mark.parametrize(
    ("content", "allowed"),
    [
        (b"hello there", IMAGES),
        (b'{"a": 1}', IMAGES | {"text/plain"}),
        (b"{not json}", IMAGES | {"application/json"}),  # shaped like JSON, but plain text
        (png(), frozenset({"image/jpeg"})),
    ],
)
def test_types_not_allowed(content: bytes, allowed: frozenset[str]) -> None:
    assert judge_upload(content, allowed, contact_judge) == uploads.NOT_ALLOWED


def test_json_is_judged_by_its_decoded_keys_strings_and_numbers() -> None:
    seen: list[str] = []
    document = b'{"n\\u00e4me": "B\\u00f6b", "items": [1.5, {"phone": "\\u0030151"}], "ok": true}'
    assert judge_upload(document, EVERYTHING, lambda text: seen.append(text) or False) is None
    assert seen == ["{näme: Böb, items: [1.5, {phone: 0151}], ok: true}"]


def test_without_a_judge_allowed_text_goes_through_at_any_size() -> None:
    """The bot's transcripts: JSON is typed by its shape, never parsed, when nobody judges it."""
    transcript = json.dumps({"entries": [{"body": "hello"}] * 200_000}, indent=1).encode()
    assert len(transcript) > 4 * MEBI
    assert judge_upload(transcript, EVERYTHING, None) is None
    assert judge_upload(transcript, EVERYTHING, contact_judge) == uploads.TEXT_TOO_LARGE


@pytest.mark.parametrize(
    ("content", "media_type"),
    [
        (b"\xff\xd8\xff\xe0\x00\x10JFIF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "image/png"),
        (b"GIF89a\x01\x00", "image/gif"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"RIFF\x10\x00\x00\x00WAVEfmt ", None),  # a RIFF that is not WebP
        (b"%PDF-1.7\n", "application/pdf"),
        (b'  {"format": "marketplace-transcript/1"}', "application/json"),
        (b"[1, 2]", "application/json"),
        (b"{not json", None),
        (b"MZ\x90\x00\x03", None),  # a Windows executable, whatever it claims to be
        (b"\x7fELF\x02\x01", None),
        (b"PK\x03\x04", None),  # zip (and docx, apk, jar)
        (b"<svg xmlns='http://www.w3.org/2000/svg'>", None),  # scriptable
        (b"<html><script>", None),
        (b"", None),
    ],
)
def test_uploads_are_known_by_their_first_bytes(content: bytes, media_type: str | None) -> None:
    assert uploads.sniff_media_type(content) == media_type


def test_every_sniffed_type_is_a_known_upload_type() -> None:
    assert {"image/jpeg", "image/png", "application/pdf", "application/json"} <= (
        uploads.KNOWN_UPLOAD_TYPES
    )


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_of(chunks: bytes) -> bytes:
    """A 1x1 PNG with `chunks` between its IHDR and its IDAT."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
    image = chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + ihdr + chunks + image


def jpeg_of(payloads: list[bytes], marker: int = 0xE1) -> bytes:
    """A phone JPEG with one segment per payload (each at most 64 KiB) after its SOI."""
    segments = b"".join(struct.pack(">BBH", 0xFF, marker, len(p) + 2) + p for p in payloads)
    photo = phone_jpeg()
    return photo[:2] + segments + photo[2:]


def exif_loops(entries: int) -> bytes:
    """IFD0 of ImageDescriptions 256 MiB long, its next IFD and its Exif IFD itself."""
    table = struct.pack("<HHII", 0x010E, 2, 1 << 28, 8) * (entries - 1)
    table += struct.pack("<HHII", 0x8769, 4, 1, 8)
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, entries) + table + struct.pack("<I", 8)


def exif_inline(entries: int, seed: int) -> bytes:
    """IFD0 of distinct 4-byte ImageDescriptions, inline."""
    table = b"".join(
        struct.pack("<HHI", 0x010E, 2, 4) + b"%04d" % ((seed * entries + k) % 10_000)
        for k in range(entries)
    )
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, entries) + table + bytes(4)


XMP_NS = b"http://ns.adobe.com/xap/1.0/\0"
ADVERSARIAL: dict[str, Callable[[], bytes]] = {
    "16 MiB of PK": lambda: b"PK" * (8 * MEBI),
    "16 MiB of %PDF- objects": lambda: (
        b"%PDF-1.7\n" + b"1 0 obj\n<< /Type /Page /Parent 2 0 R >>\nendobj\n" * 380_000
    )[: 16 * MEBI],
    "16 MiB of %PDF- streams": lambda: (
        b"%PDF-1.7\n" + b"1 0 obj <</Length 0>> stream\n\nendstream endobj\n" * 350_000
    )[: 16 * MEBI],
    "16 MiB of valid JSON nesting": lambda: (
        b"[" + b",".join([b"[" * 500 + b"]" * 500] * 16_700) + b"]"
    ),
    "16 MiB of UTF-8 text": lambda: "Grüße aus München, ruf an — ".encode() * 508_000,
    "JSON of 49,000 strings": lambda: b"[" + b",".join([b'"\\u0030"'] * 49_000) + b"]",
    "JSON of an unclosed string of escaped quotes": lambda: b'["' + b'\\"' * 49_000 + b"]",
    "PDF syntax of escaped letters in one long name": lambda: b"%PDF-1.7\n/" + b"a#41" * 250_000,
    "1 MiB of JSON nesting": lambda: b"[" + b",".join([b"[" * 24 + b"]" * 24] * 21_000) + b"]",
    "a JPEG with 16 MiB of stuffed FF 00": lambda: phone_jpeg()[:-2] + b"\xff\x00" * (8 * MEBI),
    "a GIF of 16 MiB of tiny sub-blocks": lambda: (
        b"GIF89a\1\0\1\0\0\0\0\x2c" + bytes(9) + b"\2" + b"\1\0\2\0\0" * 3_300_000
    ),
    # Metadata, read as text when there is a judge.
    "a 16 MiB PNG of tiny tEXt chunks": lambda: png_of(chunk(b"tEXt", b"Comment\0x") * 800_000),
    "a PNG of 9,900 different comments": lambda: png_of(
        b"".join(chunk(b"tEXt", b"Comment\0c%d" % k) for k in range(9_900))
    ),
    "a PNG of a 255 KiB comment": lambda: png_of(
        chunk(b"tEXt", b"Comment\0" + (b"wh4t " * 53_000)[: 255 << 10])
    ),
    "a PNG of a zTXt bomb": lambda: png_of(
        chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(64 * MEBI), 9))
    ),
    "a PNG of compressed iTXt bombs": lambda: png_of(
        chunk(b"iTXt", b"Comment\0\1\0\0\0" + zlib.compress(bytes(MEBI - 1000), 9)) * 16
    ),
    "a JPEG of EXIF with huge counts and IFD loops": lambda: jpeg_of([exif_loops(5400)] * 15),
    "a JPEG of 15 EXIF blocks of inline descriptions": lambda: jpeg_of(
        [exif_inline(5400, seed) for seed in range(15)]
    ),
    "a JPEG of 960 KiB of deeply nested XMP": lambda: jpeg_of(
        [XMP_NS + b"<dc:description><rdf:Bag>" * 2600] * 15
    ),
    "a JPEG of XMP with 57,000 human attributes": lambda: jpeg_of(
        [XMP_NS + b"".join(b" dc:title='t%d'" % k for k in range(3800))] * 15
    ),
    "a JPEG of XMP of 195,000 entities": lambda: jpeg_of(
        [XMP_NS + b"<dc:title>" + b"&amp;" * 13_000 + b"</dc:title>"] * 15
    ),
    "a JPEG of IPTC datasets": lambda: jpeg_of(
        [b"Photoshop 3.0\x008BIM\x04\x04\0\0\0\0\xff\xf0" + b"\x1c\x02\x78\0\0" * 13_100] * 15,
        0xED,
    ),
    "a PDF of 1 MiB of /Title strings": lambda: pdf(
        [b"<< " + b"".join(b"/Title (t%d) " % k for k in range(60_000)) + b">>"]
    ),
    "a PDF of 9,900 different titles": lambda: pdf(
        [b"<< " + b"".join(b"/Title (b%d) " % k for k in range(9_900)) + b">>"]
    ),
    "a PDF of a title of 500,000 escapes": lambda: pdf(
        [b"<< /Title (%s) >>" % (b"\\(" * 500_000)]
    ),
    "a PDF of a title nested 500,000 deep": lambda: pdf(
        [b"<< /Title %s >>" % (b"(" * 500_000 + b")" * 500_000)]
    ),
    "a PDF of XMP stream bombs": lambda: pdf(
        [stream(b"/Subtype /XML /Filter /FlateDecode", zlib.compress(bytes(8 * MEBI), 9))] * 8
    ),
    "a PDF of 16 MiB of uncompressed XMP streams": lambda: pdf(
        [stream(b"/Subtype /XML", b"<dc:title>t</dc:title>" * 40_000)] * 19
    ),
    "a PDF of 4 MiB of XMP tags": lambda: pdf(
        [stream(b"/Subtype /XML", b"<x:a><b:c>" * 100_000)] * 4
    ),
}
REASONS = {v for k, v in vars(uploads).items() if k.isupper() and isinstance(v, str)}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("make", ADVERSARIAL.values(), ids=ADVERSARIAL.keys())
def test_adversarial_shapes_are_judged_in_bounded_work(make: Callable[[], bytes]) -> None:
    content = make()
    for judge in (None, lambda text: False):  # the caller's judge costs what it costs
        started = time.process_time()
        verdict = judge_upload(content, EVERYTHING, judge)
        spent = time.process_time() - started
        print(f"{len(content) / MEBI:.1f} MiB, judge={judge is not None}: {spent * 1000:.1f} ms")
        assert verdict is None or verdict in REASONS
