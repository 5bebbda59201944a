"""policy.upload_metadata through judge_upload: with a text judge (here the real content rules,
policy.contact with DEFAULT_TERMS), the human-written text of image and PDF metadata is judged
as text; machine fields (makes, models, software, serial numbers, dates, IDs, tool URLs) are
not, so honest phone photos, scans and documents pass; without a judge nothing changes."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable

import pytest
from PIL import Image, PngImagePlugin

from policy import uploads
from policy.contact import DEFAULT_TERMS, contains_contact_info
from policy.uploads import judge_upload
from tests.unit import test_uploads
from tests.unit.test_uploads import (
    EVERYTHING,
    encode,
    noisy_image,
    objstm_pdf,
    pdf,
    phone_jpeg,
    stream,
    with_segment,
    word_pdf,
)

LEAK = "whatsapp me +44 7911 123456 bob.seller@gmail.com"
BREAKS = uploads.METADATA_BREAKS_RULES


def rules(text: str) -> bool:
    return contains_contact_info(text, (), DEFAULT_TERMS)


# Builders: EXIF by Pillow (as cameras and editors write it), XMP, IPTC, PNG chunks, GIF
# extensions, PDF Info dictionaries.
def camera_exif(**human: object) -> bytes:
    """An iPhone's EXIF: make, model, software, dates, lens, serial numbers, GPS, plus `human`
    tags by number (0x010E ImageDescription ...), `exif_<tag>` for the Exif IFD."""
    exif = Image.Exif()
    exif.update({0x010F: "Apple", 0x0110: "iPhone 15 Pro", 0x0131: "17.4.1"})
    exif.update({0x0132: "2024:05:01 10:22:33", 0x013C: "iPhone 15 Pro"})
    sub = exif.get_ifd(0x8769)
    sub.update({0x9003: "2024:05:01 10:22:33", 0x9004: "2024:05:01 10:22:33", 0x9010: "+02:00"})
    sub.update({0x9290: "123", 0xA433: "Apple", 0xA431: "012345678901", 0xA435: "0000c1234a"})
    sub.update({0xA434: "iPhone 15 Pro back triple camera 6.765mm f/1.78"})
    sub.update({0xA420: "0180117407206811822AAB8F2F3C4B0C", 0x9000: b"0232"})
    gps = exif.get_ifd(0x8825)
    gps.update({1: "N", 2: (51.0, 30.0, 7.4), 3: "W", 4: (0.0, 7.0, 33.9), 29: "2024:05:01"})
    for key, value in human.items():
        if key.startswith("exif_"):
            sub[int(key[5:], 16)] = value
        else:
            exif[int(key[1:], 16)] = value
    return exif.tobytes()


def camera_jpeg(xmp: bytes = b"", **human: object) -> bytes:
    photo = encode(noisy_image(320, 240), "JPEG", quality=90, exif=camera_exif(**human))
    return with_segment(photo, 0xE1, b"http://ns.adobe.com/xap/1.0/\0" + xmp) if xmp else photo


def xmp(properties: str = "", attributes: str = "") -> bytes:
    """An XMP packet as Photoshop writes it: IDs, dates, history, ancestors, camera fields."""
    return f"""<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 9.1-c001 79.a8d4753, 2023/03/23">
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about=""
 xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:xmpMM="http://ns.adobe.com/xap/1.0/mm/" xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/"
 xmlns:stEvt="http://ns.adobe.com/xap/1.0/sType/ResourceEvent#"
 xmlns:exif="http://ns.adobe.com/exif/1.0/" xmlns:tiff="http://ns.adobe.com/tiff/1.0/"
 xmp:CreatorTool="Adobe Photoshop 25.0 (Macintosh)" xmp:CreateDate="2024-05-01T10:22:33+02:00"
 xmp:ModifyDate="2024-05-02T08:01:12+02:00" dc:format="image/jpeg" photoshop:ColorMode="3"
 photoshop:ICCProfile="sRGB IEC61966-2.1" photoshop:DateCreated="2024-05-01T10:22:33.123+02:00"
 xmpMM:InstanceID="xmp.iid:0180117407206811822AAB8F2F3C4B0C"
 xmpMM:DocumentID="adobe:docid:photoshop:5c8e7a4e-1d6b-11ef-9a9c-8c3b3b3a1f2d"
 tiff:Make="Apple" tiff:Model="iPhone 15 Pro" exif:ExifVersion="0232"
 exif:GPSLatitude="51,30.1234N" exif:DateTimeOriginal="2024-05-01T10:22:33" {attributes}>
<photoshop:DocumentAncestors><rdf:Bag>
<rdf:li>adobe:docid:photoshop:0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0</rdf:li>
<rdf:li>xmp.did:7d3c1a2b-9f8e-4d6c-b5a4-3f2e1d0c9b8a</rdf:li></rdf:Bag>
</photoshop:DocumentAncestors><xmpMM:History><rdf:Seq><rdf:li stEvt:action="saved"
 stEvt:instanceID="xmp.iid:0280117407206811822AAB8F2F3C4B0C" stEvt:when="2024-05-02T08:01:12"
 stEvt:softwareAgent="Adobe Photoshop 25.0 (Macintosh)" stEvt:changed="/"/></rdf:Seq>
</xmpMM:History>{properties}</rdf:Description></rdf:RDF></x:xmpmeta>
<?xpacket end="w"?>""".encode()


def alt(name: str, text: str) -> str:
    return f'<{name}><rdf:Alt><rdf:li xml:lang="x-default">{text}</rdf:li></rdf:Alt></{name}>'


HONEST_XMP = (
    alt("dc:title", "Red bike")
    + alt("dc:description", "Red city bike, 2 years old, 120 EUR &amp; a helmet")
    + "<dc:creator><rdf:Seq><rdf:li>Bob Smith</rdf:li></rdf:Seq></dc:creator>"
    + "<dc:subject><rdf:Bag><rdf:li>bike</rdf:li><rdf:li>2024</rdf:li></rdf:Bag></dc:subject>"
    + alt("dc:rights", "© 2024 Bob Smith")
)


def extended_xmp(data: bytes, cut: int) -> list[bytes]:
    """APP1 payloads of extended XMP, cut in two at `cut`: GUID, full length, offset, part."""
    head = b"http://ns.adobe.com/xmp/extension/\0" + b"0123456789ABCDEF" * 2
    head += struct.pack(">I", len(data))
    return [head + struct.pack(">I", at) + data[at:end] for at, end in ((0, cut), (cut, None))]


def with_extended_xmp(jpeg: bytes, data: bytes, cut: int) -> bytes:
    """The JPEG with extended XMP in two APP1 segments, the second part first."""
    first, second = extended_xmp(data, cut)
    return with_segment(with_segment(jpeg, 0xE1, first), 0xE1, second)


def app13(*datasets: tuple[int, bytes]) -> bytes:
    """Photoshop image resources holding IPTC-IIM record 2 datasets."""
    iim = b"".join(b"\x1c\x02" + bytes((n,)) + struct.pack(">H", len(v)) + v for n, v in datasets)
    iim += b"\0" * (len(iim) & 1)
    return b"Photoshop 3.0\x008BIM\x04\x04\0\0" + struct.pack(">I", len(iim)) + iim


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def small_png(*chunks: bytes) -> bytes:
    """A PNG with `chunks` right after its IHDR."""
    image = encode(noisy_image(64, 48), "PNG")
    return image[:33] + b"".join(chunks) + image[33:]


def raw_profile(kind: str, data: bytes) -> bytes:
    """ImageMagick's zTXt "Raw profile type <kind>": type, length, hex lines."""
    text = f"\n{kind}\n{len(data):8d}\n".encode()
    text += b"\n".join(data[i : i + 36].hex().encode() for i in range(0, len(data), 36)) + b"\n"
    return png_chunk(b"zTXt", b"Raw profile type " + kind.encode() + b"\0\0" + zlib.compress(text))


def sub_blocks(data: bytes, size: int = 255) -> bytes:
    return (
        b"".join(
            bytes((len(data[i : i + size]),)) + data[i : i + size]
            for i in range(0, len(data), size)
        )
        + b"\0"
    )


def small_gif(*extensions: bytes) -> bytes:
    """A GIF with `extensions` before its trailer."""
    image = encode(noisy_image(64, 48).convert("P"), "GIF")
    return image[:-1] + b"".join(extensions) + b";"


def gif_xmp(packet: bytes) -> bytes:
    """XMP in GIF: raw after its application identifier, then the 258-byte magic trailer."""
    return b"!\xff\x0bXMP DataXMP" + packet + b"\x01" + bytes(range(255, -1, -1)) + b"\0"


def info_pdf(info: bytes, *objects: bytes) -> bytes:
    catalog = b"<< /Type /Catalog /Pages 2 0 R >>"
    return pdf([catalog, b"<< /Type /Pages /Kids [] /Count 0 >>", info, *objects], info=3)


def xmp_stream(packet: bytes, compressed: bool = False) -> bytes:
    dictionary = b"/Type /Metadata /Subtype /XML"
    if compressed:
        return stream(dictionary + b" /Filter /FlateDecode", zlib.compress(packet))
    return stream(dictionary, packet)


def pdftex_pdf(title: bytes = b"(Kaufvertrag Fahrrad)", outline: bytes = b"") -> bytes:
    """Info as pdfTeX and hyperref write it: machine banner, dates, bookmarks."""
    info = (
        b"<< /Producer (pdfTeX-1.40.26) /Creator (LaTeX with hyperref) /Title %s /Author "
        b"(Bob Smith) /Subject (Verkauf) /Keywords (Fahrrad, gebraucht) /CreationDate "
        b"(D:20240501102233+02'00') /ModDate (D:20240501102233+02'00') /Trapped /False "
        b"/PTEX.Fullbanner (This is pdfTeX, Version 3.141592653-2.6-1.40.26 (TeX Live 2024) "
        b"kpathsea version 6.4.0) >>" % title
    )
    bookmarks = b"<< /Title (1 Einleitung) /Parent 5 0 R /Next 6 0 R >>%s" % outline
    return info_pdf(info, b"<< /Type /Outlines /Count 2 >>", bookmarks)


GDEPTH = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description GDepth:Data="%s"/>'
    % (zlib.compress(bytes(range(256)) * 400).hex().encode())
    + b"</rdf:RDF></x:xmpmeta>"
)


def png_info() -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", "Screenshot tool 2.3.1 build 20240501123")
    info.add_itxt("Title", "Fahrrad, 120 EUR", zip=True)
    return info


HONEST_PNG_XMP = xmp(
    alt("dc:description", "A bike, barely used"),
    'exif:PixelXDimension="1512" exif:UserComment="Screenshot"',
)
HONEST: dict[str, Callable[[], bytes]] = {
    "phone JPEG (EXIF thumbnail, XMP, ICC)": phone_jpeg,
    "iPhone JPEG with serials, lens, GPS, dates and Photoshop's XMP": lambda: camera_jpeg(
        xmp(HONEST_XMP), t010E="Red bike, barely used", t013B="Bob Smith"
    ),
    "OnePlus JPEG with its oplus_ UserComment flags": lambda: camera_jpeg(
        exif_9286=b"ASCII\0\0\0oplus_16777216"
    ),
    "JPEG with a Pixel's extended XMP (depth map)": lambda: with_extended_xmp(
        camera_jpeg(xmp(HONEST_XMP)), GDEPTH, len(GDEPTH) // 2
    ),
    "JPEG re-saved by Facebook (IPTC FBMD)": lambda: with_segment(
        camera_jpeg(),
        0xED,
        app13((103, b"FBMD01000a8a0300004a1c0000c13d0000"), (120, b"Red bike")),
    ),
    "JPEG optimized by JPEGmini": lambda: with_segment(
        camera_jpeg(), 0xFE, b"Optimized by JPEGmini 3.18.4.211672608-TBTBLNP 0x88155d6d"
    ),
    "JPEG from PHP's GD": lambda: with_segment(
        camera_jpeg(), 0xFE, b"CREATOR: gd-jpeg v1.0 (using IJG JPEG v80), quality = 90\n"
    ),
    "PNG from Inkscape": lambda: small_png(png_chunk(b"tEXt", b"Software\0www.inkscape.org")),
    "PNG from matplotlib": lambda: small_png(
        png_chunk(b"tEXt", b"Software\0Matplotlib version3.8.0, https://matplotlib.org/")
    ),
    "PNG screenshot with XMP": lambda: small_png(
        png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + HONEST_PNG_XMP)
    ),
    "PNG from ImageMagick with raw EXIF": lambda: small_png(
        png_chunk(b"tEXt", b"date:create\x002024-05-01T10:22:33+00:00"),
        raw_profile("exif", camera_exif(t010E="Red bike")),
    ),
    "PNG from Stable Diffusion": lambda: small_png(
        png_chunk(b"tEXt", b"parameters\0a red bike\nSteps: 20, Seed: 1234567890, Size: 512x512")
    ),
    "PNG with Pillow's EXIF and text": lambda: encode(
        noisy_image(64, 48), "PNG", exif=camera_exif(), pnginfo=png_info()
    ),
    "GIF from ezgif": lambda: small_gif(
        b"!\xfe" + sub_blocks(b"Created with ezgif.com GIF maker")
    ),
    "GIF with XMP": lambda: small_gif(gif_xmp(xmp(HONEST_XMP))),
    "WebP with EXIF and XMP": lambda: encode(
        noisy_image(64, 48), "WEBP", exif=camera_exif(), xmp=xmp(HONEST_XMP)
    ),
    "PDF from a word processor": word_pdf,
    "PDF from pdfTeX with bookmarks": pdftex_pdf,
    "PDF from PDFsharp": lambda: info_pdf(
        b"<< /Producer (PDFsharp 1.50.5147 \\(www.pdfsharp.com\\)) /Title (Rechnung) >>"
    ),
    "PDF from Pillow (UTF-16 strings)": lambda: encode(
        noisy_image(64, 48), "PDF", title="Fahrrad für Bob", author="Bob", producer="Pillow"
    ),
    "PDF with XMP, compressed": lambda: info_pdf(
        b"<< /Title (Offer) >>", xmp_stream(xmp(HONEST_XMP), compressed=True)
    ),
    "PDF with object streams": objstm_pdf,
}


@pytest.mark.parametrize(
    "make",
    [*HONEST.values(), *test_uploads.HONEST.values()],
    ids=[*HONEST, *(f"{name} (uploads)" for name in test_uploads.HONEST)],
)
def test_honest_metadata_passes_the_content_rules(make: Callable[[], bytes]) -> None:
    assert judge_upload(make(), EVERYTHING, rules) is None


def test_the_machine_fields_passed_over_are_what_the_rules_would_refuse() -> None:
    """Why machine fields are not judged: honest serials, dates and tool links read as
    contact details (the honest files above carry them all)."""
    for value in ("012345678901", "2024:05:01 10:22:33", "www.inkscape.org", "oplus_16777216"):
        assert rules(value), value
    assert rules("PDFsharp 1.50.5147 (www.pdfsharp.com)") and rules("Seed: 1234567890")
    assert rules("Optimized by JPEGmini 3.18.4.211672608-TBTBLNP 0x88155d6d")
    assert rules("Created with ezgif.com GIF maker")


def test_the_judge_gets_the_human_fields_each_once_and_no_machine_field() -> None:
    seen: list[str] = []
    photo = camera_jpeg(xmp(HONEST_XMP), t010E="Red bike, barely used", t013B="Bob Smith")
    assert judge_upload(photo, EVERYTHING, lambda text: seen.append(text) or False) is None
    fields = seen[0].split("\nxx\n")
    assert fields == [  # XMP first (its segment comes first), then EXIF
        "Red bike",
        "Red city bike, 2 years old, 120 EUR & a helmet",
        "Bob Smith",
        "bike  2024",  # one field per element, tags stripped
        "© 2024 Bob Smith",
        "Red bike, barely used",
    ]


def test_fields_are_judged_apart_so_numbers_do_not_join_across_them() -> None:
    photo = camera_jpeg(t010E="Bike bought in 2024", t013B="2024 Bob")
    assert rules("Bike bought in 2024\n2024 Bob")  # one text: eight digits, a phone number
    assert judge_upload(photo, EVERYTHING, rules) is None


def looping_exif(value: bytes) -> bytes:
    """A little-endian TIFF block (as Windows and many cameras write them) whose IFD0 holds an
    ImageDescription and names itself as its Exif IFD and as the next IFD."""
    entries = struct.pack("<HHII", 0x010E, 2, len(value), 38)
    entries += struct.pack("<HHII", 0x8769, 4, 1, 8)
    return b"Exif\0\0II*\0" + struct.pack("<IH", 8, 2) + entries + struct.pack("<I", 8) + value


def pdf_string(key: bytes, string: bytes) -> bytes:
    return info_pdf(b"<< /Producer (Writer) %s %s >>" % (key, string))


UTF16 = b"<FEFF" + LEAK.encode("utf-16-be").hex().encode() + b">"
LEAKS: dict[str, Callable[[], bytes]] = {
    "a JPEG comment": lambda: with_segment(camera_jpeg(), 0xFE, LEAK.encode()),
    "EXIF ImageDescription": lambda: camera_jpeg(t010E=LEAK),
    "EXIF Artist": lambda: camera_jpeg(t013B=LEAK),
    "EXIF Copyright, photographer and editor": lambda: camera_jpeg(t8298="Bob\0" + LEAK),
    "EXIF UserComment, ASCII": lambda: camera_jpeg(exif_9286=b"ASCII\0\0\0" + LEAK.encode()),
    "EXIF UserComment, UNICODE": lambda: camera_jpeg(
        exif_9286=b"UNICODE\0" + LEAK.encode("utf-16-be")  # Pillow writes big-endian TIFF
    ),
    "EXIF UserComment without a prefix": lambda: camera_jpeg(exif_9286=LEAK.encode()),
    "EXIF CameraOwnerName": lambda: camera_jpeg(exif_A430=LEAK),
    "EXIF XPComment, UTF-16LE": lambda: camera_jpeg(t9C9C=LEAK.encode("utf-16-le")),
    "EXIF XPTitle, UTF-16LE": lambda: camera_jpeg(t9C9B="+44 7911 123456".encode("utf-16-le")),
    "little-endian EXIF whose IFDs loop": lambda: with_segment(
        camera_jpeg(), 0xE1, looping_exif(LEAK.encode() + b"\0")
    ),
    "XMP dc:description": lambda: camera_jpeg(xmp(alt("dc:description", LEAK))),
    "XMP with character references": lambda: camera_jpeg(
        xmp(alt("dc:title", "call &#43;44 7911 &#x31;23456 please"))
    ),
    "XMP in CDATA": lambda: camera_jpeg(xmp(alt("dc:description", f"<![CDATA[{LEAK}]]>"))),
    "XMP as an attribute": lambda: camera_jpeg(xmp(attributes=f"dc:title='{LEAK}'")),
    "XMP under another prefix": lambda: camera_jpeg(
        xmp(f'<d:description xmlns:d="http://purl.org/dc/elements/1.1/">{LEAK}</d:description>')
    ),
    "XMP creator contact info": lambda: camera_jpeg(
        xmp('<Iptc4xmpCore:CreatorContactInfo Iptc4xmpCore:CiEmailWork="bob@example.org"/>')
    ),
    "extended XMP cut inside a tag": lambda: with_extended_xmp(  # no part holds it whole
        camera_jpeg(), EXTENDED, EXTENDED.index(b"description>") + 5
    ),
    "an IPTC caption": lambda: with_segment(camera_jpeg(), 0xED, app13((120, LEAK.encode()))),
    "an IPTC contact": lambda: with_segment(
        camera_jpeg(), 0xED, app13((5, b"Bike"), (118, b"+44 7911 123456"))
    ),
    "PNG tEXt Comment": lambda: small_png(png_chunk(b"tEXt", b"Comment\0" + LEAK.encode())),
    "PNG zTXt Comment": lambda: small_png(
        png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(LEAK.encode()))
    ),
    "PNG iTXt Description": lambda: encode(noisy_image(64, 48), "PNG", pnginfo=itxt(LEAK)),
    "PNG compressed iTXt": lambda: encode(
        noisy_image(64, 48), "PNG", pnginfo=itxt(LEAK, zip=True)
    ),
    "PNG iTXt translated keyword": lambda: small_png(
        png_chunk(b"iTXt", b"Title\0\0\0en\0" + LEAK.encode() + b"\0Bike")
    ),
    "PNG keyword": lambda: small_png(png_chunk(b"tEXt", b"wa.me/447911123456\0")),
    "PNG eXIf": lambda: encode(noisy_image(64, 48), "PNG", exif=camera_exif(t010E=LEAK)),
    "PNG XMP": lambda: small_png(
        png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp(alt("dc:title", LEAK)))
    ),
    "PNG raw EXIF profile": lambda: small_png(raw_profile("exif", camera_exif(t013B=LEAK))),
    "GIF comment in small sub-blocks": lambda: small_gif(b"!\xfe" + sub_blocks(LEAK.encode(), 7)),
    "GIF plain text": lambda: small_gif(b"!\x01\x0c" + bytes(12) + sub_blocks(b"+44 7911 123456")),
    "GIF XMP": lambda: small_gif(gif_xmp(xmp(alt("dc:description", LEAK)))),
    "WebP EXIF": lambda: encode(noisy_image(64, 48), "WEBP", exif=camera_exif(t010E=LEAK)),
    "WebP XMP": lambda: encode(noisy_image(64, 48), "WEBP", xmp=xmp(alt("dc:description", LEAK))),
    "PDF /Title": lambda: pdf_string(b"/Title", b"(%s)" % LEAK.encode()),
    "PDF /Author with octal escapes": lambda: pdf_string(
        b"/Author", b"(Bob \\05344 7911 \\061\\0623456)"
    ),
    "PDF /Subject with nested parentheses": lambda: pdf_string(
        b"/Subject", b"(Bike (red) \\(call\\) +44 7911 (12 (34) 56))"
    ),
    "PDF /Keywords continued over lines": lambda: pdf_string(
        b"/Keywords", b"(bike, bob.sel\\\nler@gmail.com)"
    ),
    "PDF /Title as a hex string": lambda: pdf_string(
        b"/Title", b"<%s>" % LEAK.encode().hex().encode()
    ),
    "PDF /Title in UTF-16BE": lambda: pdf_string(b"/Title", UTF16),
    "PDF from Pillow with an author": lambda: encode(noisy_image(64, 48), "PDF", author=LEAK),
    "PDF bookmark": lambda: pdftex_pdf(outline=b"<< /Title (%s) >>" % LEAK.encode()),
    "PDF Info in an object stream": lambda: objstm_pdf(b"<< /Title (%s) >>" % LEAK.encode()),
    "PDF XMP": lambda: info_pdf(b"<< >>", xmp_stream(xmp(alt("dc:description", LEAK)))),
    "PDF XMP, compressed": lambda: info_pdf(
        b"<< >>", xmp_stream(xmp(alt("dc:title", LEAK)), compressed=True)
    ),
}
EXTENDED = xmp(alt("dc:description", LEAK))


def itxt(text: str, zip: bool = False) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Description", text, zip=zip)
    return info


@pytest.mark.parametrize("make", LEAKS.values(), ids=LEAKS.keys())
def test_contact_details_in_metadata_are_refused(make: Callable[[], bytes]) -> None:
    content = make()
    assert judge_upload(content, EVERYTHING, rules) == BREAKS
    assert judge_upload(content, EVERYTHING, None) is None  # the Synapse module: unchanged


def test_machine_fields_are_not_judged() -> None:
    """Their honest values hold serials, dates and tool URLs; a detail there passes."""
    photo = camera_jpeg(t0131="www.inkscape.org", exif_A431="447911123456")
    assert judge_upload(photo, EVERYTHING, rules) is None


def test_an_encrypted_pdfs_strings_are_not_judged() -> None:
    """They are ciphertext (and its pages, like every PDF's, are not judged either)."""
    encrypted = pdf_string(b"/Title", b"(%s) /Encrypt 9 0 R" % LEAK.encode())
    assert judge_upload(encrypted, EVERYTHING, rules) is None


def words(count: int) -> bytes:
    return b" ".join(b"word%c%c" % (97 + i % 26, 97 + i // 26 % 26) for i in range(count))


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (  # 5 x 64 KiB of text: judging only the first 256 KiB would let padding hide details
            small_png(
                *(png_chunk(b"tEXt", b"Comment\0%d %s" % (k, words(9000))) for k in range(5))
            ),
            uploads.TOO_COMPLEX,
        ),
        (
            small_png(png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(bytes(8 << 20)))),
            uploads.TOO_COMPLEX,
        ),
        (small_png(png_chunk(b"zTXt", b"Comment\0\0not zlib")), uploads.MALFORMED),
        (pdf_string(b"/Title", b"(" * 10 + b"deep" + b")" * 10), uploads.TOO_COMPLEX),
        (pdf_string(b"/Title", b"(never closed"), uploads.TOO_COMPLEX),
        (
            info_pdf(b"<< >>", stream(b"/Subtype /XML /Filter /LZWDecode", b"\x80\x0b")),
            uploads.PDF_UNREADABLE,
        ),
        (
            info_pdf(b"<< >>", xmp_stream(bytes(5 << 20), compressed=True)),
            uploads.TOO_COMPLEX,
        ),
    ],
    ids=[
        "text over 256 KiB",
        "zTXt bomb",
        "bad zTXt",
        "9 deep",
        "unclosed",
        "LZW XMP",
        "XMP bomb",
    ],
)
def test_metadata_past_the_caps_is_too_complex(content: bytes, reason: str) -> None:
    assert judge_upload(content, EVERYTHING, rules) == reason
    assert judge_upload(content, EVERYTHING, None) is None


def test_strings_nested_eight_deep_are_read() -> None:
    honest = pdf_string(b"/Title", b"(" * 9 + b"Bike" + b")" * 9)  # in its own parentheses
    assert judge_upload(honest, EVERYTHING, rules) is None
    leak = pdf_string(b"/Title", b"(" * 9 + b"+44 7911 123456" + b")" * 9)
    assert judge_upload(leak, EVERYTHING, rules) == BREAKS


@pytest.mark.parametrize(
    ("leak", "text"),
    [
        ("GIF comment in small sub-blocks", LEAK),
        ("GIF plain text", "+44 7911 123456"),
        ("EXIF UserComment, UNICODE", LEAK),
        ("EXIF XPComment, UTF-16LE", LEAK),
        ("XMP with character references", "call +44 7911 123456 please"),
        ("XMP in CDATA", LEAK),
        ("PDF /Author with octal escapes", "Bob +44 7911 123456"),
        ("PDF /Subject with nested parentheses", "Bike (red) (call) +44 7911 (12 (34) 56)"),
        ("PDF /Keywords continued over lines", "bike, bob.seller@gmail.com"),
        ("PDF /Title in UTF-16BE", LEAK),
        ("PDF /Title as a hex string", LEAK),
    ],
)
def test_the_judge_reads_the_text_as_a_viewer_shows_it(leak: str, text: str) -> None:
    seen: list[str] = []
    judge_upload(LEAKS[leak](), EVERYTHING, lambda judged: seen.append(judged) or False)
    assert text in seen[0].split("\nxx\n")
