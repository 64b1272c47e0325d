"""Mixed, real sample files for benchmarks and identification tests.

Benchmarks of format identification (and of anything that reads payloads) are
only honest on a realistic mix: images, office containers, archives, text. These
files are written with the real libraries or by hand to the published layouts
(a PDF with a correct cross-reference table, OOXML and ODF packages with their
``[Content_Types].xml`` / ``mimetype`` parts, an Excel 97 workbook in an OLE2
compound file), so format identifiers treat them
as they would treat a curator's files. Content is pseudo-random from ``seed`` so
that a run can be repeated byte for byte; most files are 10-100 KB.
"""

from __future__ import annotations

import gzip
import io
import json
import random
import struct
import tarfile
import wave
import zipfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["KINDS", "generate_mixed_files", "write_sample"]

_WORDS = (
    "archive tape cartridge fixity format migration bag payload manifest curator "
    "preservation identifier signature version access ingest storage catalogue "
    "metadata event agent object representation heritage collection record"
).split()


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def _image(rng: random.Random, mode: str, lo: int, hi: int) -> object:
    from PIL import Image

    side = rng.randint(lo, hi)
    bands = len(mode) if mode in ("RGB", "RGBA") else 1
    return Image.frombytes(mode, (side, side), rng.randbytes(side * side * bands))


def _pillow(fmt: str, mode: str, lo: int, hi: int, **save: object) -> Callable[..., bytes]:
    def make(rng: random.Random) -> bytes:
        buf = io.BytesIO()
        _image(rng, mode, lo, hi).save(buf, format=fmt, **save)  # type: ignore[attr-defined]
        return buf.getvalue()

    return make


def _pdf(rng: random.Random) -> bytes:
    """PDF 1.4 with a correct xref table, so readers need no repair to open it."""
    lines = [
        f"BT /F1 10 Tf 40 {800 - 12 * (i % 60)} Td ({_words(rng, 8)}) Tj ET"
        for i in range(rng.randint(150, 1500))
    ]
    stream = "\n".join(lines).encode("ascii")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _wav(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(rng.randbytes(2 * rng.randint(5_000, 45_000)))
    return buf.getvalue()


def _csv(rng: random.Random) -> bytes:
    rows = ["id,name,size,checksum"]
    rows += [
        f"{i},{rng.choice(_WORDS)},{rng.randint(0, 10**9)},{rng.randbytes(16).hex()}"
        for i in range(rng.randint(200, 1800))
    ]
    return ("\n".join(rows) + "\n").encode()


def _txt(rng: random.Random) -> bytes:
    return "\n".join(_words(rng, 12) for _ in range(rng.randint(120, 1000))).encode()


def _xml(rng: random.Random) -> bytes:
    records = "".join(
        f'  <record id="{i}"><title>{_words(rng, 4)}</title><size>{rng.randint(1, 10**6)}</size>'
        "</record>\n"
        for i in range(rng.randint(100, 900))
    )
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<records>\n{records}</records>\n'.encode()


def _html(rng: random.Random) -> bytes:
    paras = "".join(f"<p>{_words(rng, 20)}</p>\n" for _ in range(rng.randint(60, 500)))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
        f"<title>{_words(rng, 3)}</title></head>\n<body>\n{paras}</body>\n</html>\n"
    ).encode()


def _json(rng: random.Random) -> bytes:
    items = [
        {"id": i, "name": _words(rng, 3), "size": rng.randint(0, 10**9)}
        for i in range(rng.randint(150, 1300))
    ]
    return json.dumps({"items": items}, indent=1).encode()


def _svg(rng: random.Random) -> bytes:
    shapes = "".join(
        f'  <rect x="{rng.randint(0, 900)}" y="{rng.randint(0, 900)}" width="{rng.randint(5, 90)}"'
        f' height="{rng.randint(5, 90)}" fill="#{rng.randbytes(3).hex()}"/>\n'
        for _ in range(rng.randint(150, 1300))
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="1000" height="1000">\n'
        f"{shapes}</svg>\n"
    ).encode()


def _rtf(rng: random.Random) -> bytes:
    paras = "".join(f"{_words(rng, 15)}\\par\n" for _ in range(rng.randint(100, 900)))
    return (
        "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Times New Roman;}}\\f0\\fs24\n" + paras + "}\n"
    ).encode()


def _zip(members: list[tuple[str, bytes]], stored_first: bool = False) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for i, (name, data) in enumerate(members):
            method = zipfile.ZIP_STORED if stored_first and i == 0 else zipfile.ZIP_DEFLATED
            z.writestr(
                zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data, compress_type=method
            )
    return buf.getvalue()


_RELS_NS = "http://schemas.openxmlformats.org/package/2006/relationships"
_DOC_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument"
_CT_NS = "http://schemas.openxmlformats.org/package/2006/content-types"
_OOXML = "application/vnd.openxmlformats-officedocument"


def _ooxml(main_part: str, main_type: str, parts: list[tuple[str, str, bytes]]) -> bytes:
    """An OPC package: content types, root relationship to the main part, the parts."""
    overrides = "".join(
        f'<Override PartName="/{name}" ContentType="{ctype}"/>'
        for name, ctype, _ in [(main_part, main_type, b""), *parts]
        if ctype
    )
    content_types = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Types xmlns="{_CT_NS}">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f"{overrides}</Types>"
    ).encode()
    rels = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns='
        f'"{_RELS_NS}"><Relationship Id="rId1" Type="{_DOC_REL}" Target="{main_part}"/>'
        "</Relationships>"
    ).encode()
    return _zip(
        [("[Content_Types].xml", content_types), ("_rels/.rels", rels)]
        + [(name, data) for name, _, data in parts]
    )


def _docx(rng: random.Random) -> bytes:
    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    paras = "".join(
        f"<w:p><w:r><w:t>{_words(rng, 14)}</w:t></w:r></w:p>" for _ in range(rng.randint(300, 2500))
    )
    doc = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<w:document xmlns:w="{w}"><w:body>{paras}</w:body></w:document>'
    ).encode()
    return _ooxml(
        "word/document.xml",
        f"{_OOXML}.wordprocessingml.document.main+xml",
        [("word/document.xml", "", doc)],
    )


def _xlsx(rng: random.Random) -> bytes:
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    workbook = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<workbook xmlns="{ns}"'
        f' xmlns:r="{rel}"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/>'
        "</sheets></workbook>"
    ).encode()
    wb_rels = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships xmlns='
        f'"{_RELS_NS}"><Relationship Id="rId1" Type="{rel}/worksheet" '
        'Target="worksheets/sheet1.xml"/></Relationships>'
    ).encode()
    rows = "".join(
        f'<row r="{r}"><c r="A{r}"><v>{rng.randint(0, 10**6)}</v></c>'
        f'<c r="B{r}"><v>{rng.random():.6f}</v></c></row>'
        for r in range(1, rng.randint(400, 3000))
    )
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<worksheet xmlns="{ns}">'
        f"<sheetData>{rows}</sheetData></worksheet>"
    ).encode()
    return _ooxml(
        "xl/workbook.xml",
        f"{_OOXML}.spreadsheetml.sheet.main+xml",
        [
            ("xl/workbook.xml", "", workbook),
            ("xl/_rels/workbook.xml.rels", "", wb_rels),
            ("xl/worksheets/sheet1.xml", f"{_OOXML}.spreadsheetml.worksheet+xml", sheet),
        ],
    )


def _pptx(rng: random.Random) -> bytes:
    p = "http://schemas.openxmlformats.org/presentationml/2006/main"
    a = "http://schemas.openxmlformats.org/drawingml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    pres = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<p:presentation '
        f'xmlns:p="{p}" xmlns:r="{rel}"><p:sldIdLst><p:sldId id="256" r:id="rId2"/>'
        '</p:sldIdLst><p:sldSz cx="9144000" cy="6858000"/></p:presentation>'
    ).encode()
    pres_rels = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<Relationships '
        f'xmlns="{_RELS_NS}"><Relationship Id="rId2" Type="{rel}/slide" '
        'Target="slides/slide1.xml"/></Relationships>'
    ).encode()
    runs = "".join(
        f"<a:p><a:r><a:t>{_words(rng, 10)}</a:t></a:r></a:p>" for _ in range(rng.randint(300, 2500))
    )
    slide = (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<p:sld xmlns:p="{p}" '
        f'xmlns:a="{a}"><p:cSld><p:spTree><p:sp><p:txBody><a:bodyPr/>{runs}</p:txBody>'
        "</p:sp></p:spTree></p:cSld></p:sld>"
    ).encode()
    return _ooxml(
        "ppt/presentation.xml",
        f"{_OOXML}.presentationml.presentation.main+xml",
        [
            ("ppt/presentation.xml", "", pres),
            ("ppt/_rels/presentation.xml.rels", "", pres_rels),
            ("ppt/slides/slide1.xml", f"{_OOXML}.presentationml.slide+xml", slide),
        ],
    )


def _odf(kind: str, body: str) -> bytes:
    """An ODF 1.2 package: ``mimetype`` first and stored, as the standard requires."""
    mimetype = f"application/vnd.oasis.opendocument.{kind}"
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<manifest:manifest xmlns:manifest='
        '"urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        f'<manifest:file-entry manifest:full-path="/" manifest:version="1.2" '
        f'manifest:media-type="{mimetype}"/><manifest:file-entry manifest:full-path='
        '"content.xml" manifest:media-type="text/xml"/></manifest:manifest>'
    ).encode()
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<office:document-content xmlns:office='
        '"urn:oasis:names:tc:opendocument:xmlns:office:1.0" xmlns:text="urn:oasis:names:tc:'
        'opendocument:xmlns:text:1.0" xmlns:table="urn:oasis:names:tc:opendocument:xmlns:'
        f'table:1.0" office:version="1.2"><office:body>{body}</office:body>'
        "</office:document-content>"
    ).encode()
    return _zip(
        [
            ("mimetype", mimetype.encode()),
            ("META-INF/manifest.xml", manifest),
            ("content.xml", content),
        ],
        stored_first=True,
    )


def _odt(rng: random.Random) -> bytes:
    paras = "".join(f"<text:p>{_words(rng, 14)}</text:p>" for _ in range(rng.randint(300, 2500)))
    return _odf("text", f"<office:text>{paras}</office:text>")


def _ods(rng: random.Random) -> bytes:
    rows = "".join(
        f"<table:table-row><table:table-cell><text:p>{rng.randint(0, 10**6)}</text:p>"
        f"</table:table-cell><table:table-cell><text:p>{_words(rng, 2)}</text:p>"
        "</table:table-cell></table:table-row>"
        for _ in range(rng.randint(300, 2500))
    )
    return _odf(
        "spreadsheet",
        f'<office:spreadsheet><table:table table:name="S1">{rows}</table:table>'
        "</office:spreadsheet>",
    )


# -- OLE2 (Compound File Binary, MS-CFB) ----------------------------------------------------

_CFB_SECTOR = 512
_FREESECT, _ENDOFCHAIN, _FATSECT, _NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def _cfb_dir_entry(
    name: str, kind: int, child: int, start: int, size: int, color: int = 1
) -> bytes:
    encoded = (name + "\0").encode("utf-16-le") if name else b""
    return struct.pack(
        "<64sHBBIII16sIQQIQ",
        encoded,
        len(encoded),
        kind,  # 0 unused, 2 stream, 5 root storage
        color,  # 1 black: a one-node red-black tree is black
        _NOSTREAM,  # left sibling
        _NOSTREAM,  # right sibling
        child,
        b"\0" * 16,  # CLSID
        0,  # state bits
        0,  # created
        0,  # modified
        start,
        size,
    )


def _cfb(stream_name: str, data: bytes) -> bytes:
    """A version 3 compound file holding one stream (MS-CFB), written by hand.

    One stream of at least 4,096 bytes lives in ordinary sectors, so no mini
    stream is needed: header, FAT sector(s), one directory sector, the data.
    """
    if len(data) < 4096:
        raise ValueError("a stream under the 4096-byte cutoff would belong in the mini stream")
    data_sectors = -(-len(data) // _CFB_SECTOR)
    fat_sectors = 1
    while fat_sectors * (_CFB_SECTOR // 4) < fat_sectors + 1 + data_sectors:
        fat_sectors += 1
    if fat_sectors > 109:
        raise ValueError("stream too large for a header-only DIFAT")
    dir_sector = fat_sectors
    first_data = dir_sector + 1
    fat = [_FATSECT] * fat_sectors + [_ENDOFCHAIN]
    fat += [first_data + i + 1 for i in range(data_sectors - 1)] + [_ENDOFCHAIN]
    fat += [_FREESECT] * (fat_sectors * (_CFB_SECTOR // 4) - len(fat))
    header = struct.pack(
        "<8s16sHHHHH6sIIIIIIIII",
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        b"\0" * 16,
        0x003E,  # minor version
        0x0003,  # major version 3: 512-byte sectors
        0xFFFE,  # little-endian
        9,  # sector shift: 2**9
        6,  # mini sector shift: 2**6
        b"\0" * 6,
        0,  # directory sectors (always 0 in version 3)
        fat_sectors,
        dir_sector,
        0,  # transaction signature
        4096,  # mini stream cutoff
        _ENDOFCHAIN,  # first mini FAT sector: none
        0,
        _ENDOFCHAIN,  # first DIFAT sector: none, the header's 109 entries suffice
        0,
    )
    difat = list(range(fat_sectors)) + [_FREESECT] * (109 - fat_sectors)
    header += struct.pack("<109I", *difat)
    directory = (
        _cfb_dir_entry("Root Entry", 5, 1, _ENDOFCHAIN, 0)
        + _cfb_dir_entry(stream_name, 2, _NOSTREAM, first_data, len(data))
        + _cfb_dir_entry("", 0, _NOSTREAM, 0, 0, color=0) * 2
    )
    padded = data + b"\0" * (data_sectors * _CFB_SECTOR - len(data))
    return header + struct.pack(f"<{len(fat)}I", *fat) + directory + padded


def _biff(record: int, body: bytes = b"") -> bytes:
    return struct.pack("<HH", record, len(body)) + body


def _xls(rng: random.Random) -> bytes:
    """Excel 97 (BIFF8): a workbook globals substream and one sheet of numbers, in OLE2.

    The Workbook stream opens with the BIFF8 BOF record (0x0809, version 0x0600),
    which is what PRONOM's container signature for fmt/61 looks for.
    """
    rows = rng.randint(300, 2000)

    def bof(kind: int) -> bytes:
        return _biff(0x0809, struct.pack("<HHHHII", 0x0600, kind, 0x0DBB, 1996, 0x41, 0x06))

    sheet_name = b"Sheet1"
    boundsheet_body_size = 4 + 2 + 2 + len(sheet_name)
    globals_ = bof(0x0005) + _biff(0x0042, struct.pack("<H", 1200))  # CODEPAGE UTF-16
    sheet_offset = len(globals_) + 4 + boundsheet_body_size + len(_biff(0x000A))
    globals_ += _biff(
        0x0085,  # BOUNDSHEET: where the sheet's BOF starts, visible worksheet, its name
        struct.pack("<IBBBB", sheet_offset, 0, 0, len(sheet_name), 0) + sheet_name,
    )
    globals_ += _biff(0x000A)  # EOF
    sheet = bof(0x0010) + _biff(0x0200, struct.pack("<IIHHH", 0, rows, 0, 2, 0))  # DIMENSIONS
    for row in range(rows):
        for col in range(2):
            value = rng.random() * 10 ** rng.randint(0, 6)
            sheet += _biff(0x0203, struct.pack("<HHHd", row, col, 0x0F, value))  # NUMBER
    sheet += _biff(0x000A)
    return _cfb("Workbook", globals_ + sheet)


def _plain_zip(rng: random.Random) -> bytes:
    return _zip([("readme.txt", _txt(rng)), ("data/table.csv", _csv(rng))])


def _gzip(rng: random.Random) -> bytes:
    return gzip.compress(_txt(rng) + rng.randbytes(rng.randint(5_000, 40_000)), mtime=0)


def _tar(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("notes.txt", _txt(rng)), ("table.csv", _csv(rng))):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ico(rng: random.Random) -> bytes:
    buf = io.BytesIO()
    _image(rng, "RGBA", 32, 64).save(buf, format="ICO", sizes=[(32, 32), (64, 64)])  # type: ignore[attr-defined]
    return buf.getvalue()


def _unknown_bytes(rng: random.Random) -> bytes:
    """Bytes with no signature at all: the 'unknown' case every real transfer contains."""
    return rng.randbytes(rng.randint(10_000, 60_000))


# kind -> (file extension, writer). Insertion order is the round-robin order.
KINDS: dict[str, tuple[str, Callable[[random.Random], bytes]]] = {
    "png": ("png", _pillow("PNG", "RGB", 60, 180)),
    "tiff": ("tif", _pillow("TIFF", "RGB", 60, 180)),
    "jpeg": ("jpg", _pillow("JPEG", "RGB", 80, 300, quality=85)),
    "gif": ("gif", _pillow("GIF", "L", 100, 300)),
    "bmp": ("bmp", _pillow("BMP", "RGB", 60, 180)),
    "webp": ("webp", _pillow("WEBP", "RGB", 80, 250, quality=80)),
    "ico": ("ico", _ico),
    "pdf": ("pdf", _pdf),
    "wav": ("wav", _wav),
    "csv": ("csv", _csv),
    "txt": ("txt", _txt),
    "xml": ("xml", _xml),
    "html": ("html", _html),
    "json": ("json", _json),
    "svg": ("svg", _svg),
    "rtf": ("rtf", _rtf),
    "docx": ("docx", _docx),
    "xlsx": ("xlsx", _xlsx),
    "xls": ("xls", _xls),
    "pptx": ("pptx", _pptx),
    "odt": ("odt", _odt),
    "ods": ("ods", _ods),
    "zip": ("zip", _plain_zip),
    "gzip": ("gz", _gzip),
    "tar": ("tar", _tar),
    "unknown": ("bin", _unknown_bytes),
}


def write_sample(kind: str, path: Path, seed: int = 0) -> Path:
    """Write one file of ``kind`` to ``path``; the same seed gives the same bytes."""
    _, make = KINDS[kind]
    path.write_bytes(make(random.Random(f"{kind}:{seed}")))
    return path


def generate_mixed_files(dir: Path, n: int, seed: int = 0) -> list[Path]:
    """Write ``n`` files cycling through every kind (in a seeded order) into ``dir``.

    Cycling rather than sampling guarantees every kind is present once ``n`` is at
    least ``len(KINDS)``, so a benchmark never silently loses its container files.
    """
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    order = list(KINDS)
    rng.shuffle(order)
    paths = []
    for i in range(n):
        kind = order[i % len(order)]
        ext, _ = KINDS[kind]
        paths.append(write_sample(kind, dir / f"{i:05d}-{kind}.{ext}", seed=seed * 1_000_003 + i))
    return paths


if __name__ == "__main__":  # pragma: no cover - a quick look at the mix
    import sys
    import tempfile

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    files = generate_mixed_files(out, len(KINDS))
    for f in files:
        print(f"{f.stat().st_size:>8}  {f}")
